"""What a checkpoint records for inference on raw videos (``meta.classes``, ``meta.data``),
gathered from the training dataset and the model as plain types."""
import numbers

from .inference import dataset_label_names


def class_names(dataset, num_classes=None):
    """List index -> class name of the detections (None where the data names no class)."""
    names = dataset_label_names(dataset)
    size = max([int(i) + 1 for i in names] + [int(num_classes or 0),
                                               int(getattr(dataset, 'num_classes', 0) or 0)])
    return [str(names[i]) if i in names else None for i in range(size)]


def _number(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return None
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _common_fps(dataset):
    """The videos' frame rate (annotation records) when they all share one, else None."""
    videos = getattr(dataset, 'videos', None) or []
    rates = {v.get('fps') if isinstance(v, dict) else getattr(v, 'fps', None) for v in videos}
    return float(rates.pop()) if len(rates) == 1 and None not in rates else None


def _bank_fps(dataset):
    """The frame rate of the memory bank the training windows read (its recorded
    settings), or None without a bank."""
    bank = getattr(getattr(dataset, 'bank_reader', None), 'bank', None)
    settings = getattr(bank, 'settings', None) or {}
    return settings.get('fps')


def data_info(dataset, model):
    """fps, feat_stride (frames per feature step), feat_num_frames (frames seen by a step)
    and, when the dataset / model define them, downsample_rate, chunk_size, frames_per_row,
    window_size, max_seq_len, force_upsampling, extraction (how the features were computed,
    ``vedatad.engine.extract.Extraction.record``)."""
    info = {}
    fps = None
    for name in ('sample_fps', 'fps', 'default_fps'):
        fps = fps if fps is not None else _number(getattr(dataset, name, None))
    fps = fps if fps is not None else _number(_bank_fps(dataset)) or _common_fps(dataset)
    info['fps'] = fps
    if hasattr(model, 'feat_stride') and hasattr(model, 'frames_per_row'):
        # end to end: a detector step covers feat_stride frames, centred per frames_per_row
        info['feat_stride'] = _number(model.feat_stride)
        info['feat_num_frames'] = _number(model.frames_per_row)
        info['frames_per_row'] = _number(model.frames_per_row)
        info['chunk_size'] = _number(getattr(model, 'chunk_size', None))
    else:
        rate = _number(getattr(dataset, 'downsample_rate', 1)) or 1
        stride = _number(getattr(dataset, 'feat_stride', None))
        info['feat_stride'] = stride * rate if stride is not None else None
        info['feat_num_frames'] = _number(getattr(dataset, 'num_frames', None))
        info['downsample_rate'] = rate
    for name in ('window_size', 'max_seq_len'):
        value = _number(getattr(dataset, name, None))
        if value is not None:
            info[name] = value
    if getattr(dataset, 'force_upsampling', None) is not None:
        info['force_upsampling'] = bool(dataset.force_upsampling)
    if isinstance(getattr(dataset, 'extraction', None), dict):
        info['extraction'] = dataset.extraction  # features exported by vedatad
    return info
