"""Average precision per class and tIoU, as the official ActivityNet detection evaluator.

Rules (ActivityNet ``Evaluation/eval_detection.py``):
- tIoU(p, g) = inter / (len(g) + len(p) - inter), inter = max(0, min(ends) - max(starts)).
- Per class, predictions are visited in decreasing score. Each one is matched, separately at
  every threshold, to the ground truth of that class in the same video with the highest tIoU
  among those not yet matched at that threshold, provided that tIoU >= threshold; otherwise it
  is a false positive. Predictions in videos without ground truth of the class are false
  positives.
- AP = all-point interpolated precision/recall area (VOC 2011 style): precision made
  monotone from the right, summed over the points where recall changes. A class without
  predictions has AP 0; mAP = mean over the ground truth's classes.

Canonical order (the official code sorts with an unstable argsort, so its result may depend
on input order when scores tie): predictions are ranked by decreasing score, then video id
(string order), then start time, then end time, all ascending. Predictions that still tie
are identical, so their order cannot change any number. When two unmatched ground-truth
instances have exactly the same tIoU with a prediction, the later one in annotation order
is taken (what the official evaluator's reversed stable argsort does).

Vectorised: matching only interacts inside one (class, video) pair, so all pairs advance
together, one prediction rank per step, over every threshold at once.
"""
import numpy as np

from .inputs import DetectionArrays


def segment_tiou(p0, p1, g0, g1):
    """tIoU with the official operation order; arrays broadcast (NaN when both lengths are 0)."""
    inter = np.clip(np.minimum(p1, g1) - np.maximum(p0, g0), 0, None)
    union = (g1 - g0) + (p1 - p0) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return inter / union


def canonical_order(pred: DetectionArrays, video_names) -> np.ndarray:
    """Indices of predictions sorted by (-score, video id, t0, t1)."""
    name_rank = np.empty(len(video_names), dtype=np.int64)
    name_rank[np.argsort(np.asarray(video_names, dtype=object), kind='stable')] = \
        np.arange(len(video_names))
    return np.lexsort((pred.t1, pred.t0, name_rank[pred.video], -pred.score))


class Groups:
    """(class, video) pairs: predictions sorted by canonical rank inside each pair, and the
    pair's ground truth padded to a (pairs, G) matrix."""

    def __init__(self, gt: DetectionArrays, pred: DetectionArrays, rank, num_videos):
        gt_key = gt.cls * num_videos + gt.video
        pred_key = pred.cls * num_videos + pred.video
        # predictions: contiguous by pair, canonical order inside
        self.pred_order = np.lexsort((rank, pred_key))
        sorted_key = pred_key[self.pred_order]
        keys, self.pred_start, self.pred_count = np.unique(
            sorted_key, return_index=True, return_counts=True)
        # ground truth: contiguous by pair, annotation order inside
        gt_order = np.argsort(gt_key, kind='stable')
        gt_keys, gt_start, gt_count = np.unique(gt_key[gt_order], return_index=True,
                                                return_counts=True)
        pos = np.minimum(np.searchsorted(gt_keys, keys), len(gt_keys) - 1)  # needs >= 1 GT
        self.has_gt = gt_keys[pos] == keys
        self.gt_group = pos                      # index into the GT pairs (valid if has_gt)
        self.gt_order, self.gt_keys = gt_order, gt_keys
        self.gt_start, self.gt_count = gt_start, gt_count
        self.pad_t0, self.pad_t1, self.pad_valid, self.pad_index = self._pad(gt)

    def _pad(self, gt):
        width = int(self.gt_count.max(initial=0))
        col = np.arange(width)
        valid = col[None, :] < self.gt_count[:, None]                       # pairs, G
        index = self.gt_order[np.where(valid, self.gt_start[:, None] + col[None, :], 0)]
        t0 = np.where(valid, gt.t0[index], np.nan)
        t1 = np.where(valid, gt.t1[index], np.nan)
        return t0, t1, valid, np.where(valid, index, -1)


def match_predictions(gt, pred, rank, num_videos, tious) -> np.ndarray:
    """True-positive flags (T, P) for every prediction (in input order) and threshold."""
    tious = np.asarray(tious, dtype=np.float64)
    tp = np.zeros((len(tious), len(pred.cls)), dtype=bool)
    if len(pred.cls) == 0 or len(gt.cls) == 0:
        return tp
    groups = Groups(gt, pred, rank, num_videos)
    sel = np.nonzero(groups.has_gt)[0]
    # pairs with most predictions first, so the pairs still active at step k are a prefix
    sel = sel[np.argsort(-groups.pred_count[sel], kind='stable')]
    counts = groups.pred_count[sel]
    starts = groups.pred_start[sel]
    g0 = groups.pad_t0[groups.gt_group[sel]]                                 # S, G
    g1 = groups.pad_t1[groups.gt_group[sel]]
    taken = np.zeros((len(tious), len(sel), g0.shape[1]), dtype=bool)       # T, S, G
    thr = tious[:, None, None]
    for k in range(int(counts.max(initial=0))):
        active = int(np.searchsorted(-counts, -k, side='left'))  # counts > k
        rows = groups.pred_order[starts[:active] + k]                         # A
        iou = segment_tiou(pred.t0[rows, None], pred.t1[rows, None],
                           g0[:active], g1[:active])                          # A, G
        free = (iou[None] >= thr) & ~taken[:, :active]                       # T, A, G
        best = _last_argmax(np.where(free, iou[None], -np.inf))              # T, A
        hit = free.any(axis=2)                                                # T, A
        t_idx, a_idx = np.nonzero(hit)
        taken[t_idx, a_idx, best[t_idx, a_idx]] = True
        tp[:, rows] = hit
    return tp


def _last_argmax(values):
    """argmax over the last axis, taking the last position among equal maxima."""
    flipped = values[..., ::-1]
    return values.shape[-1] - 1 - np.argmax(flipped, axis=-1)


def interpolated_ap(precision, recall):
    """All-point interpolated AP of one precision/recall curve (official arithmetic)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def average_precision(tp, pred_cls, order, gt_cls, num_classes) -> np.ndarray:
    """AP (T, C) from true-positive flags (T, P); ``order`` is the canonical ranking."""
    num_t = tp.shape[0]
    ap = np.zeros((num_t, num_classes))
    npos = np.bincount(gt_cls, minlength=num_classes).astype(np.float64)
    ranked_cls = pred_cls[order]
    by_class = order[np.argsort(ranked_cls, kind='stable')]   # class-major, canonical inside
    bounds = np.searchsorted(pred_cls[by_class], np.arange(num_classes + 1))
    for c in range(num_classes):
        idx = by_class[bounds[c]:bounds[c + 1]]
        if len(idx) == 0 or npos[c] == 0:
            continue
        hits = tp[:, idx].astype(np.float64)                   # T, P_c
        tp_cum = np.cumsum(hits, axis=1)
        fp_cum = np.cumsum(1.0 - hits, axis=1)
        recall = tp_cum / npos[c]
        precision = tp_cum / (tp_cum + fp_cum)
        for t in range(num_t):
            ap[t, c] = interpolated_ap(precision[t], recall[t])
    return ap
