"""Turning head outputs into detections: decode, NMS, seconds, external-score fusion.

Units: inside the model time is in input feature steps; a step index t covers the clip
whose centre frame is t * feat_stride + feat_num_frames / 2, so
    seconds = (t * feat_stride + 0.5 * feat_num_frames) / fps.
"""
import json
from pathlib import Path

import numpy as np
import torch

from ..ops import batched_nms
from ..utils.safe_load import load_plain_pickle


def decode_level(cls_logits, offsets, points, mask, pre_nms_thresh, pre_nms_topk,
                 duration_thresh):
    """Candidates of one pyramid level of one video.

    cls_logits: (T_l, K)  offsets: (T_l, 2) in strides  points: (T_l, 4)  mask: (T_l,)
    Keeps (point, class) pairs with probability > pre_nms_thresh, at most pre_nms_topk of
    the best, decodes their segments and drops those not longer than duration_thresh.
    Returns segments (n, 2) in feature steps, scores (n,), labels (n,).
    """
    num_classes = cls_logits.shape[1]
    probs = (cls_logits.sigmoid() * mask[:, None]).flatten()  # T_l * K
    # the best pre_nms_topk of all, then the threshold: the same set as thresholding first,
    # without sorting every pair above the threshold
    probs, flat_idx = probs.topk(min(pre_nms_topk, probs.numel()))
    keep = probs > pre_nms_thresh
    probs, flat_idx = probs[keep], flat_idx[keep]
    pt_idx = torch.div(flat_idx, num_classes, rounding_mode='floor')
    labels = torch.fmod(flat_idx, num_classes)

    pts, offs = points[pt_idx], offsets[pt_idx]
    start = pts[:, 0] - offs[:, 0] * pts[:, 3]
    end = pts[:, 0] + offs[:, 1] * pts[:, 3]
    long_enough = (end - start) > duration_thresh
    return torch.stack((start, end), dim=-1)[long_enough], probs[long_enough], labels[long_enough]


def apply_nms(segs, scores, labels, test_cfg):
    """Soft-NMS / NMS / none as configured (test_cfg keys as in the reference YAML)."""
    method = test_cfg['nms_method']
    if method == 'none':
        return segs, scores, labels
    if method not in ('soft', 'hard'):
        raise ValueError(f"test_cfg.nms_method must be 'soft', 'hard' or 'none', got {method!r}")
    return batched_nms(segs, scores, labels, test_cfg['iou_threshold'], test_cfg['min_score'],
                       test_cfg['max_seg_num'], use_soft_nms=(method == 'soft'),
                       multiclass=test_cfg['multiclass_nms'], sigma=test_cfg['nms_sigma'],
                       voting_thresh=test_cfg['voting_thresh'])


def steps_to_seconds(segs, feat_stride, feat_num_frames, fps, duration):
    """(N, 2) feature steps -> seconds, clamped to [0, duration]."""
    secs = (segs * feat_stride + 0.5 * feat_num_frames) / fps
    return secs.clamp(min=0.0, max=float(duration))


def load_external_scores(path):
    """Video-level class scores {video_id: [score per class]} from a CUHK-style JSON
    (``{"results": {...}}`` or a plain dict) or a pickle of such a dict (the release's
    ``.pkl`` score files). Pickles are read with a restricted unpickler: only plain
    containers, numbers, strings and numpy arrays; anything else is refused, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'external classification score file not found: {path}')
    if path.suffix == '.json':
        with open(path, encoding='utf-8') as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}: not valid JSON ({err})') from None
    else:
        data = load_plain_pickle(path, what='external classification score file')
    if isinstance(data, dict) and isinstance(data.get('results'), dict):
        data = data['results']
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping video id -> class scores, '
                         f'got {type(data).__name__}')
    scores = {}
    for vid, values in data.items():
        try:
            scores[vid] = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f'{path}: video {vid!r}: class scores are not a list of '
                             f'numbers ({type(values).__name__})') from None
    return scores


def fuse_external_scores(result, video_scores, topk=2, num_pred=200, source=''):
    """Give class-agnostic detections the top-k classes of a video-level classifier.

    result: {'video_id', 'segments' (N, 2), 'scores' (N,), 'labels' (N,)} (one video).
    Keeps the num_pred best segments and repeats them once per top-k class c with score
    sqrt(p_c * segment score), class-major order (all segments of the best class first).
    """
    vid = result['video_id']
    if vid not in video_scores:
        raise KeyError(f'video {vid!r} has no entry in the external score file {source}')
    cls_scores = torch.as_tensor(video_scores[vid], dtype=torch.float64)
    top_scores, top_classes = cls_scores.sort(descending=True, stable=True)
    top_scores, top_classes = top_scores[:topk], top_classes[:topk]

    scores = result['scores']
    order = scores.argsort(descending=True, stable=True)[:num_pred]
    segs, scores = result['segments'][order], scores[order].double()
    fused = torch.sqrt(top_scores[:, None] * scores[None, :])  # topk, N
    return {
        'video_id': vid,
        'segments': segs.repeat(len(top_classes), 1),
        'scores': fused.flatten().to(result['scores'].dtype),
        'labels': top_classes[:, None].expand(-1, len(order)).flatten().long(),
    }
