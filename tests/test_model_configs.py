"""Model sections of the official ActionFormer configs build and train on random features.

Each section is the official YAML's model part merged with the release defaults (what
configs/actionformer/* must produce). The full-size model is built on the meta device to
check its structure; the forward / backward runs on the same architecture (inputs,
sequence length, windows, pyramid, position embedding, regression ranges) with narrower
hidden layers, so the test stays fast on a CPU.
"""
import pytest
import torch

from vedatad.models import build_model

torch.set_num_threads(1)

TRAIN = dict(init_loss_norm=100, clip_grad_l2norm=1.0, cls_prior_prob=0.01,
             center_sample='radius', center_sample_radius=1.5)
OFFICIAL = {
    'thumos_i3d': dict(
        input_dim=2048, num_classes=20, max_seq_len=2304, fpn_type='identity',
        max_buffer_len_factor=6.0, n_mha_win_size=19, train_cfg=TRAIN,
        test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=200, min_score=0.001,
                      multiclass_nms=True)),
    'anet_tsp': dict(
        input_dim=512, num_classes=1, max_seq_len=192, fpn_type='identity',
        max_buffer_len_factor=1.0, n_mha_win_size=[7, 7, 7, 7, 7, -1], n_head=4, embd_dim=256,
        fpn_dim=256, head_dim=256, use_abs_pe=True,
        train_cfg=dict(TRAIN, init_loss_norm=200, label_smoothing=0.1, droppath=0.1,
                       loss_weight=2.0),
        test_cfg=dict(voting_thresh=0.9, pre_nms_topk=2000, max_seg_num=100, min_score=0.001,
                      multiclass_nms=False, nms_sigma=0.75, duration_thresh=0.001)),
    'epic_slowfast_verb': dict(
        input_dim=2304, num_classes=97, max_seq_len=2304, fpn_type='identity',
        regression_range=[[0, 4], [2, 8], [4, 16], [8, 32], [16, 64], [32, 10000]],
        max_buffer_len_factor=4.0, n_mha_win_size=9, train_cfg=dict(TRAIN, init_loss_norm=250),
        test_cfg=dict(pre_nms_topk=5000, max_seg_num=2000, min_score=0.001, nms_sigma=0.4,
                      multiclass_nms=True)),
    'ego4d_slowfast_omnivore_egovlp': dict(
        input_dim=[2304, 1536, 256], num_classes=110, max_seq_len=1024, fpn_type='identity',
        regression_range=[[0, 4], [2, 8], [4, 16], [8, 32], [16, 64], [32, 128], [64, 256],
                          [128, 10000]],
        backbone_arch=[2, 2, 7], max_buffer_len_factor=4.0, n_mha_win_size=9, n_head=16,
        embd_dim=[256, 384, 384], fpn_dim=1024, head_dim=1024, use_abs_pe=True,
        train_cfg=dict(TRAIN, dropout=0.1, droppath=0.1),
        test_cfg=dict(pre_nms_topk=5000, max_seg_num=2000, min_score=0.001, nms_sigma=0.9,
                      multiclass_nms=True, voting_thresh=0.95)),
}
# the ActivityNet setting with the FPN neck instead of the identity one
OFFICIAL['anet_tsp_fpn'] = dict(OFFICIAL['anet_tsp'], fpn_type='fpn')

EXPECTED = {  # name: (first-layer weight shapes, number of pyramid levels)
    'thumos_i3d': ([(512, 2048, 3)], 6),
    'anet_tsp': ([(256, 512, 3)], 6),
    'anet_tsp_fpn': ([(256, 512, 3)], 6),
    'epic_slowfast_verb': ([(512, 2304, 3)], 6),
    'ego4d_slowfast_omnivore_egovlp': ([(256, 2304, 1), (384, 1536, 1), (384, 256, 1)], 8),
}


def narrow(cfg, factor=8):
    """Same architecture with hidden widths divided by `factor`."""
    embd = cfg.get('embd_dim', 512)
    embd = [e // factor for e in embd] if isinstance(embd, list) else embd // factor
    total = sum(embd) if isinstance(embd, list) else embd
    return dict(cfg, embd_dim=embd, fpn_dim=total, head_dim=total)


def random_video(cfg, length, seed):
    g = torch.Generator().manual_seed(seed)
    channels = cfg['input_dim']
    channels = sum(channels) if isinstance(channels, list) else channels
    starts = torch.rand(4, generator=g) * length * 0.8
    segs = torch.stack([starts, starts + 1 + torch.rand(4, generator=g) * length * 0.2], 1)
    return {'video_id': f'rand{seed}', 'feats': torch.randn(channels, length, generator=g),
            'segments': segs, 'labels': torch.randint(0, cfg['num_classes'], (4,), generator=g),
            'fps': 30.0, 'duration': length * 16 / 30.0, 'feat_stride': 16,
            'feat_num_frames': 32}


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_model_section_builds_and_trains(name):
    cfg = dict(type='ActionFormer', **OFFICIAL[name])
    with torch.device('meta'):
        full = build_model(cfg)
    first_shapes, num_levels = EXPECTED[name]
    if isinstance(cfg['input_dim'], list):
        assert [tuple(p.conv.weight.shape) for p in full.backbone.proj] == first_shapes
    else:
        assert [tuple(full.backbone.embd[0].conv.weight.shape)] == first_shapes
    assert len(full.fpn_strides) == num_levels == len(full.reg_head.scale)

    torch.manual_seed(0)
    model = build_model(narrow(cfg)).train()
    max_len = cfg['max_seq_len']
    batch = [random_video(cfg, max_len, 0), random_video(cfg, max_len * 2 // 3, 1)]
    losses = model(batch, mode='loss')
    assert torch.isfinite(losses['final_loss']) and losses['final_loss'] > 0
    losses['final_loss'].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

    model.eval()
    test_video = random_video(cfg, max_len + max_len // 2, 2)  # longer than training
    result = model([test_video], mode='predict')[0]
    assert result['segments'].shape[0] > 0
    assert result['segments'].min() >= 0
    assert result['segments'].max() <= test_video['duration']
