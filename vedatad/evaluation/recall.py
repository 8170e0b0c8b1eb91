"""Recall@k×N as ActionFormer reports it.

For every class and every video with n > 0 ground-truth instances of it, the top k·n
predictions of that class in that video (canonical order, see ``detection``) are kept; a
ground-truth instance counts as recalled at a threshold when any kept prediction reaches
that tIoU with it (no one-to-one matching). Per class: recalled / instances; reported:
mean over the ground truth's classes.
"""
import numpy as np

from .detection import Groups, segment_tiou


def topk_recall(groups: Groups, gt, pred, num_videos, tious, topk, num_classes) -> np.ndarray:
    """Per-class recall (T, K, C)."""
    tious = np.asarray(tious, dtype=np.float64)
    recall = np.zeros((len(tious), len(topk), num_classes))
    if len(pred.cls) == 0:
        return recall
    # per sorted prediction: its pair and its position inside the pair
    pair = np.repeat(np.arange(len(groups.pred_count)), groups.pred_count)
    position = np.arange(len(pair)) - groups.pred_start[pair]
    with_gt = groups.has_gt[pair]
    gt_pair = groups.gt_group[pair]                              # GT pair of each prediction
    n_gt = np.where(with_gt, groups.gt_count[gt_pair], 0)
    gt_class = groups.gt_keys // num_videos                      # class of each GT pair
    npos = np.bincount(gt.cls, minlength=num_classes).astype(np.float64)
    for ki, k in enumerate(topk):
        kept = np.nonzero(with_gt & (position < k * n_gt))[0]   # sorted by pair already
        if len(kept) == 0:
            continue
        rows = groups.pred_order[kept]
        pairs = gt_pair[kept]
        iou = segment_tiou(pred.t0[rows, None], pred.t1[rows, None],
                           groups.pad_t0[pairs], groups.pad_t1[pairs])         # R, G
        first = np.nonzero(np.r_[True, pairs[1:] != pairs[:-1]])[0]
        best = np.fmax.reduceat(iou, first, axis=0)                             # pairs, G
        hit = (best[None] >= tious[:, None, None]) & groups.pad_valid[pairs[first]][None]
        per_pair = hit.sum(axis=2)                                              # T, pairs
        for t in range(len(tious)):
            recall[t, ki] = np.bincount(gt_class[pairs[first]], weights=per_pair[t],
                                        minlength=num_classes)
    return recall / np.maximum(npos, 1)[None, None]
