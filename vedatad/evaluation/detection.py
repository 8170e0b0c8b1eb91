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
together, one prediction rank per step, over every threshold at once (pairs bucketed by
their number of instances, so each bucket works on a narrow matrix; a pair with one instance
needs no steps: the first prediction reaching the threshold takes it). Predictions below the
lowest threshold with every instance are false positives and skip the matching.
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
    order = np.argsort(-pred.score)          # ties are put in canonical order below
    score = pred.score[order]
    tie = score[1:] == score[:-1]
    if not tie.any():
        return order
    # re-sort only the runs of equal scores by (run, video name, t0, t1)
    in_tie = np.zeros(len(order), dtype=bool)
    in_tie[1:] |= tie
    in_tie[:-1] |= tie
    pos = np.nonzero(in_tie)[0]
    run = np.cumsum(np.r_[True, ~tie][pos])        # a new run starts where no tie on the left
    name_rank = np.empty(len(video_names), dtype=np.int64)
    name_rank[np.argsort(np.asarray(video_names, dtype=object), kind='stable')] = \
        np.arange(len(video_names))
    idx = order[pos]
    order[pos] = idx[np.lexsort((pred.t1[idx], pred.t0[idx], name_rank[pred.video[idx]], run))]
    return order


def stable_argsort(keys):
    """Stable argsort of non-negative integer keys; keys below 2**32 are sorted as two
    16-bit digits, for which numpy's stable sort is a radix sort (several times faster
    than sorting int64)."""
    keys = np.asarray(keys)
    top = int(keys.max(initial=0))
    if top >= 2 ** 32 or (len(keys) and int(keys.min()) < 0):
        return np.argsort(keys, kind='stable')
    perm = np.argsort((keys & 0xFFFF).astype(np.uint16), kind='stable')
    if top < 2 ** 16:
        return perm
    high = (keys[perm] >> 16).astype(np.uint16)
    return perm[np.argsort(high, kind='stable')]


def _runs(sorted_keys):
    """(distinct keys, start, length) of the runs of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return sorted_keys, np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.nonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])[0]
    counts = np.diff(np.r_[starts, len(sorted_keys)])
    return sorted_keys[starts], starts, counts


class Groups:
    """(class, video) pairs: predictions sorted by canonical rank inside each pair, and the
    pair's ground truth padded to a (pairs, G) matrix (needs at least one GT instance)."""

    def __init__(self, gt: DetectionArrays, pred: DetectionArrays, order, num_videos):
        gt_key = gt.cls * num_videos + gt.video
        pred_key = pred.cls * num_videos + pred.video
        # predictions: contiguous by pair, canonical order inside (stable sort of the ranking)
        self.pred_order = order[stable_argsort(pred_key[order])]
        keys, self.pred_start, self.pred_count = _runs(pred_key[self.pred_order])
        # ground truth: contiguous by pair, annotation order inside
        self.gt_order = stable_argsort(gt_key)
        self.gt_keys, self.gt_start, self.gt_count = _runs(gt_key[self.gt_order])
        pos = np.minimum(np.searchsorted(self.gt_keys, keys), len(self.gt_keys) - 1)
        self.has_gt = self.gt_keys[pos] == keys
        self.gt_group = pos                      # index into the GT pairs (valid if has_gt)
        self.pad_t0, self.pad_t1, self.pad_valid = self._pad(gt)

    def _pad(self, gt):
        width = int(self.gt_count.max(initial=0))
        col = np.arange(width)
        valid = col[None, :] < self.gt_count[:, None]                       # pairs, G
        index = self.gt_order[np.where(valid, self.gt_start[:, None] + col[None, :], 0)]
        t0 = np.where(valid, gt.t0[index], np.nan)
        t1 = np.where(valid, gt.t1[index], np.nan)
        return t0, t1, valid


def match_predictions(groups: Groups, pred, tious) -> np.ndarray:
    """True-positive flags (T, P) for every prediction (in input order) and threshold."""
    tious = np.asarray(tious, dtype=np.float64)
    tp = np.zeros((len(tious), len(pred.cls)), dtype=bool)
    if len(pred.cls) == 0:
        return tp
    # predictions of pairs with ground truth, grouped by pair, canonical order inside
    pair = np.repeat(np.arange(len(groups.pred_count)), groups.pred_count)
    pos = np.nonzero(groups.has_gt[pair])[0]
    rows = groups.pred_order[pos]                                            # R
    gt_pair = groups.gt_group[pair[pos]]
    # pairs with few instances are matched on narrow matrices: bucket by padded width
    bucket = np.ceil(np.log2(groups.gt_count[gt_pair])).astype(np.int64)
    for b in np.unique(bucket):
        sel = np.nonzero(bucket == b)[0]
        width = 2 ** int(b)
        b_rows, b_pair = rows[sel], gt_pair[sel]
        iou = segment_tiou(pred.t0[b_rows, None], pred.t1[b_rows, None],
                           groups.pad_t0[b_pair, :width], groups.pad_t1[b_pair, :width])
        # a prediction below the lowest threshold is a false positive and takes nothing;
        # NaN pads never pass a threshold
        live = np.nonzero((iou >= tious.min()).any(axis=1))[0]
        _, starts, counts = _runs(b_pair[live])
        if width == 1:
            _first_match(iou[live, 0], b_rows[live], starts, tious, tp)
        else:
            _greedy_match(iou[live], b_rows[live], starts, counts, tious, tp)
    return tp


def _first_match(iou, rows, starts, tious, tp):
    """Pairs with a single instance: at each threshold the first prediction (canonical
    order) reaching it takes the instance; no later one can."""
    if len(iou) == 0:
        return
    position = np.arange(len(iou))
    for t, thr in enumerate(tious):
        first = np.minimum.reduceat(np.where(iou >= thr, position, len(iou)), starts)
        tp[t, rows[first[first < len(iou)]]] = True


def _greedy_match(iou, rows, starts, counts, tious, tp):
    """Greedy matching, all pairs and thresholds at once, one prediction rank per step.

    Pair i owns predictions starts[i] .. starts[i] + counts[i] - 1 (canonical order) of
    ``iou`` (R, G) and ``rows`` (their indices into ``tp``, which is filled in)."""
    # pairs with most live predictions first, so the pairs still active at step k are a prefix
    by_count = np.argsort(-counts, kind='stable')
    starts, counts = starts[by_count], counts[by_count]
    taken = np.zeros((len(tious), len(starts), iou.shape[1]), dtype=bool)  # T, S, G
    thr = tious[:, None, None]
    for k in range(int(counts.max(initial=0))):
        active = int(np.searchsorted(-counts, -k, side='left'))  # counts > k
        idx = starts[:active] + k                                            # A
        cur = iou[idx]                                                       # A, G
        free = (cur[None] >= thr) & ~taken[:, :active]                       # T, A, G
        best = _last_argmax(np.where(free, cur[None], -np.inf))              # T, A
        hit = free.any(axis=2)                                               # T, A
        t_idx, a_idx = np.nonzero(hit)
        taken[t_idx, a_idx, best[t_idx, a_idx]] = True
        tp[:, rows[idx]] = hit


def _last_argmax(values):
    """argmax over the last axis, taking the last position among equal maxima."""
    flipped = values[..., ::-1]
    return values.shape[-1] - 1 - np.argmax(flipped, axis=-1)


def average_precision(tp, pred_cls, order, gt_cls, num_classes) -> np.ndarray:
    """AP (T, C) from true-positive flags (T, P); ``order`` is the canonical ranking.

    Official all-point interpolation: precision made monotone from the right, area summed
    where recall changes. Recall changes only at true positives, and precision only peaks
    there, so only the true positives are visited: the i-th one of a class, at rank r, has
    precision i / r and adds (i / npos - (i - 1) / npos) times the largest precision of the
    class's true positives from it on."""
    num_t = tp.shape[0]
    ap = np.zeros((num_t, num_classes))
    npos = np.bincount(gt_cls, minlength=num_classes).astype(np.float64)
    by_class = order[stable_argsort(pred_cls[order])]   # class-major, canonical inside
    cls = pred_cls[by_class]
    class_start = np.searchsorted(cls, np.arange(num_classes))
    t_idx, pos = np.nonzero(tp[:, by_class])              # TPs, by threshold then class, rank
    if len(pos) == 0:
        return ap
    hit_cls = cls[pos]
    rank = (pos - class_start[hit_cls] + 1).astype(np.float64)
    keys, starts, counts = _runs(t_idx * num_classes + hit_cls)   # one run per (t, class)
    nth = (np.arange(len(pos)) - np.repeat(starts, counts) + 1).astype(np.float64)
    precision = nth / rank
    step = nth / npos[hit_cls] - (nth - 1) / npos[hit_cls]
    best = np.empty_like(precision)
    for a, n in zip(starts, counts):
        best[a:a + n] = np.maximum.accumulate(precision[a:a + n][::-1])[::-1]
    ap.flat[keys] = np.add.reduceat(step * best, starts)   # key = t * C + class
    return ap
