"""Official ActionFormer checkpoints: key names, strict loading, error reports."""
import pytest
import torch

from vedatad.models.detectors.actionformer import ActionFormer
from vedatad.models.official_ckpt import CheckpointMismatchError, load_official_actionformer

# Model section of the official configs/thumos_i3d.yaml merged with the release defaults.
THUMOS_I3D = dict(
    backbone_type='convTransformer', fpn_type='identity', backbone_arch=(2, 2, 5),
    scale_factor=2, input_dim=2048, max_seq_len=2304, max_buffer_len_factor=6.0, n_head=4,
    n_mha_win_size=19, embd_kernel_size=3, embd_dim=512, embd_with_ln=True, fpn_dim=512,
    fpn_with_ln=True, fpn_start_level=0, head_dim=512,
    regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)],
    head_num_layers=3, head_kernel_size=3, head_with_ln=True, use_abs_pe=False,
    use_rel_pe=False, num_classes=20,
    train_cfg=dict(init_loss_norm=100, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
                   center_sample='radius', center_sample_radius=1.5),
    test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=200, min_score=0.001,
                  multiclass_nms=True))

# Parameter names and shapes of the official release's thumos_i3d model (its
# state_dict without the 'module.' prefix): the embedding convs have no bias (followed by
# LayerNorm), every transformer block (2 stem + 5 branch, strides 1 / 2, all with
# 3-tap depthwise q/k/v convs and drop-path LayerScale) has the same 27 entries.
BLOCK_KEYS = [
    ('ln1.weight', (1, 512, 1)),
    ('ln1.bias', (1, 512, 1)),
    ('ln2.weight', (1, 512, 1)),
    ('ln2.bias', (1, 512, 1)),
    ('attn.query_conv.conv.weight', (512, 1, 3)),
    ('attn.query_norm.weight', (1, 512, 1)),
    ('attn.query_norm.bias', (1, 512, 1)),
    ('attn.key_conv.conv.weight', (512, 1, 3)),
    ('attn.key_norm.weight', (1, 512, 1)),
    ('attn.key_norm.bias', (1, 512, 1)),
    ('attn.value_conv.conv.weight', (512, 1, 3)),
    ('attn.value_norm.weight', (1, 512, 1)),
    ('attn.value_norm.bias', (1, 512, 1)),
    ('attn.key.weight', (512, 512, 1)),
    ('attn.key.bias', (512,)),
    ('attn.query.weight', (512, 512, 1)),
    ('attn.query.bias', (512,)),
    ('attn.value.weight', (512, 512, 1)),
    ('attn.value.bias', (512,)),
    ('attn.proj.weight', (512, 512, 1)),
    ('attn.proj.bias', (512,)),
    ('mlp.0.weight', (2048, 512, 1)),
    ('mlp.0.bias', (2048,)),
    ('mlp.3.weight', (512, 2048, 1)),
    ('mlp.3.bias', (512,)),
    ('drop_path_attn.scale', (1, 512, 1)),
    ('drop_path_mlp.scale', (1, 512, 1)),
]
OTHER_KEYS = [
    ('backbone.embd.0.conv.weight', (512, 2048, 3)),
    ('backbone.embd.1.conv.weight', (512, 512, 3)),
    ('backbone.embd_norm.0.weight', (1, 512, 1)),
    ('backbone.embd_norm.0.bias', (1, 512, 1)),
    ('backbone.embd_norm.1.weight', (1, 512, 1)),
    ('backbone.embd_norm.1.bias', (1, 512, 1)),
    ('neck.fpn_norms.0.weight', (1, 512, 1)),
    ('neck.fpn_norms.0.bias', (1, 512, 1)),
    ('neck.fpn_norms.1.weight', (1, 512, 1)),
    ('neck.fpn_norms.1.bias', (1, 512, 1)),
    ('neck.fpn_norms.2.weight', (1, 512, 1)),
    ('neck.fpn_norms.2.bias', (1, 512, 1)),
    ('neck.fpn_norms.3.weight', (1, 512, 1)),
    ('neck.fpn_norms.3.bias', (1, 512, 1)),
    ('neck.fpn_norms.4.weight', (1, 512, 1)),
    ('neck.fpn_norms.4.bias', (1, 512, 1)),
    ('neck.fpn_norms.5.weight', (1, 512, 1)),
    ('neck.fpn_norms.5.bias', (1, 512, 1)),
    ('cls_head.head.0.conv.weight', (512, 512, 3)),
    ('cls_head.head.1.conv.weight', (512, 512, 3)),
    ('cls_head.norm.0.weight', (1, 512, 1)),
    ('cls_head.norm.0.bias', (1, 512, 1)),
    ('cls_head.norm.1.weight', (1, 512, 1)),
    ('cls_head.norm.1.bias', (1, 512, 1)),
    ('cls_head.cls_head.conv.weight', (20, 512, 3)),
    ('cls_head.cls_head.conv.bias', (20,)),
    ('reg_head.head.0.conv.weight', (512, 512, 3)),
    ('reg_head.head.1.conv.weight', (512, 512, 3)),
    ('reg_head.norm.0.weight', (1, 512, 1)),
    ('reg_head.norm.0.bias', (1, 512, 1)),
    ('reg_head.norm.1.weight', (1, 512, 1)),
    ('reg_head.norm.1.bias', (1, 512, 1)),
    ('reg_head.scale.0.scale', ()),
    ('reg_head.scale.1.scale', ()),
    ('reg_head.scale.2.scale', ()),
    ('reg_head.scale.3.scale', ()),
    ('reg_head.scale.4.scale', ()),
    ('reg_head.scale.5.scale', ()),
    ('reg_head.offset_head.conv.weight', (2, 512, 3)),
    ('reg_head.offset_head.conv.bias', (2,)),
]
OFFICIAL_THUMOS_I3D_KEYS = dict(
    OTHER_KEYS + [(f'backbone.{stage}.{i}.{name}', shape)
                  for stage, count in (('stem', 2), ('branch', 5)) for i in range(count)
                  for name, shape in BLOCK_KEYS])


def thumos_on_meta():
    # shapes only: build on the meta device, no memory or init cost
    with torch.device('meta'):
        return ActionFormer(**THUMOS_I3D)


def test_thumos_i3d_keys_equal_the_official_release():
    assert len(OFFICIAL_THUMOS_I3D_KEYS) == 229
    ours = {k: tuple(v.shape) for k, v in thumos_on_meta().state_dict().items()}
    assert sorted(set(ours) - set(OFFICIAL_THUMOS_I3D_KEYS)) == []
    assert sorted(set(OFFICIAL_THUMOS_I3D_KEYS) - set(ours)) == []
    assert ours == OFFICIAL_THUMOS_I3D_KEYS


SMALL = dict(input_dim=12, num_classes=3, max_seq_len=32, backbone_arch=(2, 1, 2), n_head=2,
             n_mha_win_size=5, embd_dim=16, fpn_dim=16, head_dim=16,
             regression_range=[(0, 4), (4, 8), (8, 10000)])


def fake_official_checkpoint(model, ema_shift=1.0):
    """The layout the official train.py saves: DataParallel keys, EMA and raw weights."""
    raw = {f'module.{k}': v.clone() for k, v in model.state_dict().items()}
    ema = {k: v + ema_shift for k, v in raw.items()}
    return {'epoch': 35, 'state_dict': raw, 'state_dict_ema': ema,
            'optimizer': {'state': {}, 'param_groups': []}, 'scheduler': {'last_epoch': 35}}


def test_loads_ema_weights_from_a_file(tmp_path):
    torch.manual_seed(0)
    source = ActionFormer(**SMALL)
    path = tmp_path / 'epoch_035.pth.tar'
    torch.save(fake_official_checkpoint(source), path)
    target = ActionFormer(**SMALL)
    assert load_official_actionformer(target, path) == 35
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value + 1.0)


def test_raw_weights_when_asked():
    torch.manual_seed(0)
    source = ActionFormer(**SMALL)
    target = ActionFormer(**SMALL)
    load_official_actionformer(target, fake_official_checkpoint(source), use_ema=False)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_mismatches_are_listed():
    ckpt = fake_official_checkpoint(ActionFormer(**SMALL))
    ema = ckpt['state_dict_ema']
    del ema['module.reg_head.scale.2.scale']
    ema['module.backbone.extra.weight'] = torch.zeros(1)
    ema['module.cls_head.cls_head.conv.bias'] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_actionformer(ActionFormer(**SMALL), ckpt)
    text = str(err.value)
    assert 'missing (1): reg_head.scale.2.scale' in text
    assert 'unexpected (1): backbone.extra.weight' in text
    assert 'cls_head.cls_head.conv.bias: checkpoint (5,) vs model (3,)' in text


def test_missing_section_and_missing_file(tmp_path):
    ckpt = fake_official_checkpoint(ActionFormer(**SMALL))
    del ckpt['state_dict_ema']
    with pytest.raises(CheckpointMismatchError, match='state_dict_ema'):
        load_official_actionformer(ActionFormer(**SMALL), ckpt)
    with pytest.raises(FileNotFoundError, match='nope.pth.tar'):
        load_official_actionformer(ActionFormer(**SMALL), tmp_path / 'nope.pth.tar')
