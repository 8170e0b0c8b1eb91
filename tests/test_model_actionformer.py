"""ActionFormer detector: losses, training, inference in seconds, padding rules, fusion."""
import json

import pytest
import torch

from vedatad.models import build_model
from vedatad.models.detectors.actionformer import ActionFormer
from vedatad.models.postprocess import (decode_level, fuse_external_scores,
                                        load_external_scores, steps_to_seconds)

torch.set_num_threads(1)

SMALL = dict(type='ActionFormer', input_dim=16, num_classes=3, max_seq_len=64,
             backbone_arch=(2, 1, 3), n_head=4, n_mha_win_size=5, embd_dim=32, fpn_dim=32,
             head_dim=32, regression_range=[(0, 4), (4, 8), (8, 16), (16, 10000)],
             train_cfg=dict(init_loss_norm=10, droppath=0.0),
             test_cfg=dict(voting_thresh=0.7, max_seg_num=50))


def small_model(**overrides):
    torch.manual_seed(0)
    cfg = {**SMALL, **overrides}
    return build_model(cfg)


def video(T, vid='v', segments=((10.0, 20.0), (30.0, 45.0)), labels=(0, 2), seed=0, C=16):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(C, T, generator=g) * 0.1
    for (s, e), lab in zip(segments, labels):  # class-specific signal inside actions
        feats[lab * 4:(lab + 1) * 4, int(s):int(e)] += 1.0
    return {'video_id': vid, 'feats': feats, 'segments': torch.tensor(segments),
            'labels': torch.tensor(labels), 'fps': 10.0, 'duration': T * 4 / 10.0,
            'feat_stride': 4, 'feat_num_frames': 8}


def test_registry_builds_actionformer_and_rejects_unknown_cfg_keys():
    model = small_model()
    assert isinstance(model, ActionFormer)
    assert model.fpn_strides == [1, 2, 4, 8]
    assert model.max_div_factor == 8 * 4  # stride 8 x window (5 // 2) * 2
    with pytest.raises(ValueError, match=r"unknown config key 'model.train_cfg.center_radius'; "
                                         r"did you mean 'model.train_cfg.center_sample_radius'"):
        ActionFormer(**{k: v for k, v in SMALL.items() if k != 'type'} |
                     {'train_cfg': dict(center_radius=1.0)})
    with pytest.raises(ValueError, match='divisible'):
        ActionFormer(**{k: v for k, v in SMALL.items() if k != 'type'} | {'max_seq_len': 48})


def test_padded_length_rule():
    model = small_model()
    assert model.padded_length(10) == 64      # short: max_seq_len
    assert model.padded_length(64) == 64
    assert model.padded_length(65) == 96      # long: next multiple of 32
    assert model.padded_length(128) == 128


def test_loss_keys_values_and_normaliser_ema():
    model = small_model().train()
    losses = model([video(60), video(40, segments=((5.0, 9.0),), labels=(1,))], mode='loss')
    assert set(losses) == {'cls_loss', 'reg_loss', 'final_loss'}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    torch.testing.assert_close(losses['final_loss'], losses['cls_loss'] + losses['reg_loss'])
    # EMA moved from 10 towards the positive count (> 1 here)
    assert 9.0 + 0.1 < model.loss_normalizer < 10.0 + 0.1 * 200
    state = model.extra_state()
    fresh = small_model()
    fresh.load_extra_state(state)
    assert fresh.loss_normalizer == model.loss_normalizer
    losses['final_loss'].backward()
    assert model.backbone.embd[0].conv.weight.grad.abs().sum() > 0


def test_auto_loss_weight_and_label_smoothing():
    batch = [video(60)]
    auto = small_model(train_cfg=dict(loss_weight=-1, label_smoothing=0.1)).train()
    losses = auto(batch, mode='loss')
    # loss_weight <= 0 scales the regression loss to the size of the classification loss
    # (its divisor floored at 0.01)
    cls, reg = losses['cls_loss'].item(), losses['reg_loss'].item()
    assert reg > 0
    assert losses['final_loss'].item() == pytest.approx(cls + reg * cls / max(reg, 0.01),
                                                        rel=1e-5)
    plain = small_model(train_cfg=dict(loss_weight=-1)).train()
    assert not torch.allclose(plain(batch, mode='loss')['cls_loss'], losses['cls_loss'])


def test_training_steps_decrease_the_loss():
    model = small_model().train()
    batch = [video(64, seed=1), video(50, seed=2, segments=((3.0, 12.0),), labels=(1,))]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(25):
        loss = model(batch, mode='loss')['final_loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history


def test_training_rejects_missing_ground_truth_naming_the_video():
    item = video(30, vid='no_gt')
    item['segments'] = None
    with pytest.raises(ValueError, match='no_gt'):
        small_model().train()([item], mode='loss')


def test_predict_returns_sorted_detections_in_seconds_within_duration():
    model = small_model().eval()
    results = model([video(60, vid='a'), video(150, vid='b')], mode='predict')
    assert [r['video_id'] for r in results] == ['a', 'b']
    for r, duration in zip(results, (24.0, 60.0)):
        segs, scores, labels = r['segments'], r['scores'], r['labels']
        assert 0 < segs.shape[0] <= 50
        assert segs.shape == (scores.shape[0], 2) and labels.dtype == torch.long
        assert segs.min() >= 0 and segs.max() <= duration
        assert (segs[:, 1] >= segs[:, 0]).all()
        assert (scores[:-1] >= scores[1:]).all()
        assert labels.min() >= 0 and labels.max() < 3


def test_predict_batch_equals_one_video_at_a_time():
    model = small_model().eval()
    videos = [video(60, vid='a', seed=3), video(33, vid='b', seed=4), video(100, vid='c')]
    together = model(videos, mode='predict')
    for item, res in zip(videos, together):
        alone = model([item], mode='predict')[0]
        torch.testing.assert_close(res['segments'], alone['segments'])
        torch.testing.assert_close(res['scores'], alone['scores'])


def test_forward_feats_api_for_tallformer():
    model = small_model()
    feats = torch.randn(2, 16, 40)
    masks = torch.arange(40)[None] < torch.tensor([40, 25])[:, None]
    model.train()
    losses = model.forward_feats_loss(feats, masks, [torch.tensor([[2.0, 9.0]]),
                                                     torch.zeros(0, 2)],
                                      [torch.tensor([1]), torch.zeros(0, dtype=torch.long)])
    assert torch.isfinite(losses['final_loss'])
    model.eval()
    metas = [dict(video_id=f'w{i}', fps=25.0, duration=6.0, feat_stride=4, feat_num_frames=16)
             for i in range(2)]
    results = model.forward_feats_predict(feats, masks, metas)
    assert [r['video_id'] for r in results] == ['w0', 'w1']
    assert all(r['segments'].max() <= 6.0 for r in results)


def test_decode_level_threshold_topk_and_short_segments():
    K = 2
    logits = torch.full((4, K), -10.0)
    logits[1, 0], logits[2, 1], logits[3, 0] = 2.0, 1.0, 0.5
    offsets = torch.tensor([[0., 0.], [1., 2.], [0.5, 0.5], [0.001, 0.001]])
    points = torch.tensor([[float(t * 2), 0, 100, 2.0] for t in range(4)])
    mask = torch.tensor([True, True, True, True])
    segs, scores, labels = decode_level(logits, offsets, points, mask, pre_nms_thresh=0.1,
                                        pre_nms_topk=10, duration_thresh=0.05)
    # point 3's segment (length 0.004) is dropped; the rest decode as t -/+ offset * stride
    assert labels.tolist() == [0, 1]
    assert segs.tolist() == [[0.0, 6.0], [3.0, 5.0]]
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([2.0, 1.0])))
    top1 = decode_level(logits, offsets, points, mask, 0.1, 1, 0.05)
    assert top1[2].tolist() == [0]
    masked = decode_level(logits, offsets, points, torch.tensor([1, 0, 1, 1]).bool(), 0.1, 10,
                          0.05)
    assert masked[2].tolist() == [1]


def test_steps_to_seconds_half_clip_offset_and_clamp():
    segs = torch.tensor([[0.0, 10.0], [-5.0, 1000.0]])
    secs = steps_to_seconds(segs, feat_stride=4, feat_num_frames=16, fps=8.0, duration=30.0)
    # (t * 4 + 8) / 8
    assert secs.tolist() == [[1.0, 6.0], [0.0, 30.0]]


def test_segments_past_the_video_end_are_dropped_not_zero_length():
    model = small_model()
    meta = dict(video_id='v', fps=8.0, duration=30.0, feat_stride=4, feat_num_frames=16)
    # steps -> seconds: (t * 4 + 8) / 8; the second segment starts after the 30 s end
    segs = torch.tensor([[0.0, 10.0], [70.0, 90.0], [50.0, 80.0]])
    scores, labels = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 2])
    result = model.finalize_candidates(meta, segs, scores, labels)
    out = result['segments']
    assert (out[:, 1] > out[:, 0]).all() and out.min() >= 0 and out.max() <= 30.0
    assert result['labels'].tolist() == [0, 2] and len(result['scores']) == 2


def test_external_score_fusion(tmp_path):
    result = {'video_id': 'x', 'segments': torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.0, 9.0]]),
              'scores': torch.tensor([0.25, 0.81, 0.04]), 'labels': torch.zeros(3).long()}
    path = tmp_path / 'cuhk.json'
    path.write_text(json.dumps({'results': {'x': [0.1, 0.64, 0.01, 0.36]}}))
    scores = load_external_scores(path)
    fused = fuse_external_scores(result, scores, topk=2, num_pred=2)
    assert fused['labels'].tolist() == [1, 1, 3, 3]
    assert fused['segments'].tolist() == [[3, 5], [1, 2], [3, 5], [1, 2]]
    assert fused['scores'].tolist() == pytest.approx([0.72, 0.4, 0.54, 0.3], rel=1e-6)
    with pytest.raises(KeyError, match='missing_video'):
        fuse_external_scores({**result, 'video_id': 'missing_video'}, scores)


def test_class_agnostic_model_uses_external_scores(tmp_path):
    path = tmp_path / 'scores.json'
    path.write_text(json.dumps({'a': [0.0, 0.2, 0.0, 0.9, 0.1]}))
    model = small_model(num_classes=1, test_cfg=dict(multiclass_nms=False,
                                                     ext_score_file=str(path))).eval()
    res = model([video(60, vid='a', labels=(0, 0))], mode='predict')[0]
    n = res['scores'].numel() // 2
    assert n > 0
    assert res['labels'].tolist() == [3] * n + [1] * n
    assert (res['scores'][:n] > res['scores'][n:]).all()


def test_conv_backbone_fpn_neck_and_later_start_level():
    model = small_model(backbone_type='conv', fpn_type='fpn', fpn_start_level=1, fpn_dim=24,
                        head_dim=24, regression_range=[(0, 8), (8, 16), (16, 10000)]).train()
    assert model.fpn_strides == [2, 4, 8]
    assert len(model.neck.lateral_convs) == 3
    losses = model([video(60)], mode='loss')
    losses['final_loss'].backward()
    assert model.neck.lateral_convs[0].conv.weight.grad.abs().sum() > 0
    res = model.eval()([video(60)], mode='predict')[0]
    assert res['segments'].shape[0] > 0


def test_no_candidate_gives_empty_results():
    model = small_model(test_cfg=dict(pre_nms_thresh=0.999)).eval()
    res = model([video(60)], mode='predict')[0]
    assert res['segments'].shape == (0, 2) and res['scores'].numel() == 0
