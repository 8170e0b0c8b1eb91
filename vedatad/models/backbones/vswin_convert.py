"""Official Video Swin release file -> a converted file that ``VideoSwin(pretrained=)`` loads
(``tools/convert_vswin_ckpt.py``).

Sits above both ``vswin_checkpoint`` (key mapping, file reading) and ``video_swin`` (the
network, which loads weights through ``vswin_checkpoint``), so neither imports the other
both ways.
"""
from ...utils.io import atomic_torch_save
from .video_swin import VideoSwin
from .vswin_checkpoint import (CONVERTED_FORMAT, CONVERTED_VERSION, VSwinCheckpointError,
                               check_and_fill, infer_arch, read_vswin_state_dict)


def convert_checkpoint(src, dst, log=print):
    """Official/mmaction2 release file -> converted file that ``pretrained=`` loads.

    Every source key is mapped or reported; returns the report.
    """
    state_dict, report = read_vswin_state_dict(src)
    if report is None:
        raise VSwinCheckpointError(f'{src} is already in the converted layout')
    spec = infer_arch(state_dict)
    model = VideoSwin(arch=None, drop_path_rate=0.0, **spec)
    full = check_and_fill(model, state_dict, report['index_buffers'], source=str(src))
    model.load_state_dict(full)  # proves the file loads
    for key, why in report['dropped']:
        log(f'dropped {key}: {why}')
    log(f'mapped {len(report["mapped"])} keys; architecture {spec}')
    meta = dict(format=CONVERTED_FORMAT, version=CONVERTED_VERSION, arch=spec,
                source=str(src), dropped=[k for k, _ in report['dropped']])
    atomic_torch_save(dict(state_dict=full, meta=meta), dst)
    return report
