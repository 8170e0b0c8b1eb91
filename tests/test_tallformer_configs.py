"""The TALLFormer configs build, and each names a template bank that an extraction config
fills with the same backbone, crop and frame rate."""
from pathlib import Path

import pytest
from mmengine.config import Config

from vedatad.engine.config_resolve import resolve_config
from vedatad.models import build_model

REPO = Path(__file__).resolve().parents[1]
TALLFORMER = sorted((REPO / 'configs' / 'tallformer').glob('*.py'))
END_TO_END = TALLFORMER + [REPO / 'configs' / 'own_data' / 'videos_tallformer.py']
EXTRACT = {Config.fromfile(str(p)).bank.path: Config.fromfile(str(p))
           for p in sorted((REPO / 'configs' / 'extract').glob('*.py'))}


@pytest.mark.parametrize('path', TALLFORMER, ids=lambda p: p.stem)
def test_template_bank_comes_from_a_matching_extraction_config(path):
    cfg = Config.fromfile(str(path))
    template = cfg.model.membank.template
    assert template in EXTRACT, f'{path.name}: no configs/extract/ config fills {template}'
    ext = EXTRACT[template]
    assert ext.backbone.arch == cfg.model.backbone.arch
    assert ext.backbone.pretrained == cfg.model.backbone.pretrained
    assert ext.data.crop_size == cfg.train_dataset.pipeline_cfg.crop_size
    assert ext.data.root == cfg.train_dataset.data_prefix
    assert ext.data.subset in (None, cfg.train_dataset.subset)


@pytest.mark.parametrize('path', TALLFORMER, ids=lambda p: p.stem)
def test_model_builds_with_consistent_shapes(path):
    cfg = Config.fromfile(str(path))
    # tcm.max_len and detector.max_seq_len follow from the window (no data needed for them)
    assert resolve_config(cfg, use_data=False) == []
    model_cfg = cfg.model.to_dict()
    model_cfg['backbone']['pretrained'] = None  # no weights here; structure only
    model = build_model(model_cfg)
    window = cfg.train_dataset.window_size
    assert window % model.chunk_size == 0
    steps = window // model.feat_stride
    assert steps <= model.detector.max_seq_len, 'a training window must fit the detector'
    assert model.tcm.reduction[0].in_channels == model.backbone.out_channels
    assert model.detector.padded_length(steps) == model.detector.max_seq_len
    for layer in model.tcm.layers:  # the relative position table spans one window
        assert layer.attn.rel_bias.max_len == steps


@pytest.mark.parametrize('path', END_TO_END, ids=lambda p: p.stem)
def test_training_uses_bank_backed_windows(path):
    """Training decodes only the fresh chunks (uint8) and reads the rest from the bank;
    the chunk choice is a data setting, not a model one."""
    from vedatad.data.video_dataset import default_video_pipeline
    cfg = Config.fromfile(str(path))
    pipeline_cfg = cfg.train_dataset.pipeline_cfg.to_dict()
    assert 0 < pipeline_cfg['keep_ratio'] < 1 and 'keep_ratio' not in cfg.model
    types = [t['type'] for t in default_video_pipeline(
        'train', cfg.train_dataset.window_size, cfg.train_dataset.chunk_size, **pipeline_cfg)]
    assert types.index('SelectFreshChunks') < types.index('DecodeFrames')
    assert types[-1] == 'FormatFreshChunks'
    normalize = [t for t in default_video_pipeline(
        'train', cfg.train_dataset.window_size, **pipeline_cfg) if t['type'] == 'Normalize']
    assert normalize[0]['on_device']
