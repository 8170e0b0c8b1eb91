"""1-D non-maximum suppression of temporal segments, no compiled code (CPU or GPU inputs).

Semantics follow ActionFormer's post-processing (its C++ ``nms_1d_cpu`` extension and
``batched_nms``), so detections match theirs without compiling anything:

- overlap: ``inter / (len_a + len_b - inter)`` with every length padded by 1e-6 (the C++
  ``areas = x2 - x1 + 1e-6``), so two identical segments overlap slightly less than 1;
- hard NMS: scores <= ``min_score`` are removed first (when min_score > 0), then greedily in
  decreasing score every segment overlapping a kept one by >= ``iou_threshold`` is removed;
- soft-NMS (Gaussian): repeatedly take the highest current score; every remaining segment's
  score is multiplied by ``exp(-iou^2 / sigma)`` (``iou_threshold`` is unused, as there) and
  dropped once it falls below ``min_score``; the taken segment itself is never dropped;
- class-wise NMS never lets segments of different classes interact;
- score voting (class-agnostic mode only, as in ActionFormer): each kept segment's boundaries
  become the average of all pre-NMS segments weighted by score * plain tIoU over those with
  plain tIoU >= ``voting_thresh``.

Ties: among equal current scores the segment with the lower input index is taken first.
(The C++ scan picks the first one in its internally permuted array, which is only defined by
its swap history; outside exact ties the results are the same.)

Greedy NMS is sequential within a class, but classes never interact: each step takes the
best remaining segment of every class at once (one vectorised pass over a class x candidate
table), and a class stops as soon as it cannot reach the best ``max_seg_num`` any more, since
its later segments can only score lower. A THUMOS video (20 classes, thousands of candidates)
takes about a dozen steps instead of ``max_seg_num``.
"""
import heapq
from contextlib import contextmanager

import numpy as np
import torch

_LENGTH_PAD = 1e-6


@contextmanager
def single_thread():
    """Run the enclosed small, sequential torch ops on one CPU thread.

    Each NMS step touches a few thousand numbers; spreading that over the intra-op pool
    costs more in wake-ups than it saves, and on a busy machine the pool's threads compete
    with everything else. The previous thread count is restored afterwards."""
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


def pairwise_iou(a, b, pad=_LENGTH_PAD):
    """Overlap (Na, Nb) between segments a (Na, 2) and b (Nb, 2)."""
    left = torch.maximum(a[:, None, 0], b[None, :, 0])
    right = torch.minimum(a[:, None, 1], b[None, :, 1])
    inter = (right - left).clamp(min=0)
    len_a = a[:, 1] - a[:, 0] + pad
    len_b = b[:, 1] - b[:, 0] + pad
    return inter / (len_a[:, None] + len_b[None, :] - inter)


def _cap(max_num, n):
    return n if max_num is None or max_num <= 0 else min(max_num, n)


def _class_table(labels, n):
    """(K, M) numpy table of candidate indices, one row per class in input order, -1 padded;
    one row of all candidates when labels is None."""
    if labels is None:
        return np.arange(n)[None]
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind='stable')
    slot = np.arange(n) - (np.cumsum(counts) - counts)[inverse[order]]
    table = np.full((len(counts), counts.max()), -1, dtype=np.int64)
    table[inverse[order], slot] = order
    return table


def _greedy(segs, scores, labels, max_num, update, keep=None):
    """Greedy selection shared by NMS and soft-NMS, all classes at once.

    Every step takes, in each class that can still contribute, the candidate with the highest
    current score (the first in input order on ties); ``update(current, iou)`` then lowers the
    others of that class, or removes them (score -inf), by their overlap iou with it. Scores
    never rise, so a class stops once its best current score falls below the max_num-th best
    score taken so far, or after max_num takes: the result equals running the classes one
    after another and keeping the best max_num overall.

    The loop runs on numpy arrays: a step is a handful of operations on a few thousand
    numbers, where torch's per-operation overhead would cost more than the arithmetic.
    Returns (indices, scores when taken) as tensors on the inputs' device, by decreasing score
    then input index.
    """
    device, dtype = scores.device, scores.dtype
    scores_np = scores.detach().cpu().numpy()
    segs_np = segs.detach().cpu().numpy().astype(scores_np.dtype, copy=False)
    n = scores_np.shape[0]
    limit = _cap(max_num, n)
    table = _class_table(None if labels is None else labels.detach().cpu().numpy(), n)
    index = table.clip(min=0)                                 # K, M
    current = scores_np[index]
    dead = table < 0 if keep is None else (table < 0) | ~keep.cpu().numpy()[index]
    current[dead] = -np.inf
    lo, hi = segs_np[index, 0], segs_np[index, 1]
    length = hi - lo + np.asarray(_LENGTH_PAD, dtype=scores_np.dtype)
    taken = np.zeros(len(table), dtype=np.int64)
    best_scores = []          # min-heap of the best `limit` scores taken so far
    out_index, out_scores = [], []
    while True:
        rows = np.arange(len(current))
        best = current.argmax(axis=1)                          # R
        best_score = current[rows, best]
        threshold = best_scores[0] if len(best_scores) >= limit else -np.inf
        active = (best_score > -np.inf) & (best_score >= threshold) & (taken < limit)
        if not active.all():
            if not active.any():
                break
            current, lo, hi, length, index, taken, best, best_score = (
                a[active] for a in (current, lo, hi, length, index, taken, best, best_score))
            rows = np.arange(len(current))
        out_index.append(index[rows, best])
        out_scores.append(best_score)
        for value in best_score.tolist():
            (heapq.heappush if len(best_scores) < limit else heapq.heappushpop)(best_scores,
                                                                                value)
        taken += 1
        pick_lo, pick_hi = lo[rows, best][:, None], hi[rows, best][:, None]
        pick_len = length[rows, best][:, None]
        current[rows, best] = -np.inf
        inter = np.minimum(pick_hi, hi) - np.maximum(pick_lo, lo)
        np.maximum(inter, 0, out=inter)
        update(current, inter / (pick_len + length - inter))  # R, M
    if not out_index:
        return (torch.zeros(0, dtype=torch.long, device=device),
                torch.zeros(0, dtype=dtype, device=device))
    out_index, out_scores = np.concatenate(out_index), np.concatenate(out_scores)
    order = np.lexsort((out_index, -out_scores))[:limit]
    return (torch.from_numpy(out_index[order]).to(device),
            torch.from_numpy(out_scores[order]).to(device=device, dtype=dtype))


def nms_1d(segs, scores, iou_threshold, min_score=0.0, max_num=-1, labels=None):
    """Hard NMS. Returns indices into the inputs of the kept segments, by decreasing score.

    segs (N, 2), scores (N,); labels (N,) makes it class-wise; max_num <= 0: no cap.
    """
    def suppress(current, iou):
        current[iou >= iou_threshold] = -np.inf

    above = scores > min_score if min_score > 0 else None
    return _greedy(segs, scores, labels, max_num, suppress, keep=above)[0]


def soft_nms_1d(segs, scores, sigma=0.5, min_score=0.0, max_num=-1, labels=None):
    """Gaussian soft-NMS. Returns (indices of the taken segments, their decayed scores), by
    decreasing decayed score (the order a single class takes them)."""
    def decay(current, iou):
        alive = current > -np.inf  # a zero factor must not turn -inf into NaN
        np.multiply(current, np.exp(-(iou * iou) / np.float32(sigma)), out=current,
                    where=alive)
        current[current < min_score] = -np.inf

    return _greedy(segs, scores, labels, max_num, decay)


def score_voting(nms_segs, all_segs, all_scores, iou_threshold):
    """Refine kept segments (K, 2) as the score*tIoU weighted mean of the pre-NMS segments
    (N, 2) overlapping them by >= iou_threshold (plain tIoU, no length padding). A kept segment
    without any positive weight (e.g. zero score) stays as it is."""
    iou = pairwise_iou(nms_segs, all_segs, pad=0.0)                          # K, N
    weights = (iou >= iou_threshold).to(all_scores.dtype) * all_scores[None, :] * iou
    total = weights.sum(dim=1, keepdim=True)                                 # K, 1
    refined = (weights / total.clamp(min=torch.finfo(weights.dtype).tiny)) @ all_segs
    return torch.where(total > 0, refined, nms_segs)


def batched_nms(segs, scores, labels, iou_threshold, min_score, max_seg_num, use_soft_nms=True,
                multiclass=True, sigma=0.5, voting_thresh=0.75):
    """ActionFormer-style post-processing of one video's candidates.

    Args:
        segs (N, 2) float, scores (N,), labels (N,) long: candidates, any device.
        iou_threshold: hard-NMS suppression overlap (unused by Gaussian soft-NMS).
        min_score: hard NMS drops scores <= it beforehand; soft-NMS drops segments whose
            decayed score falls below it.
        max_seg_num: keep at most this many (per class and overall); <= 0 means no cap.
        use_soft_nms: Gaussian soft-NMS (sigma) instead of hard NMS.
        multiclass: NMS within each class; otherwise across classes, followed by score
            voting when voting_thresh > 0.
    Returns:
        (segs (K, 2), scores (K,), labels (K,)) sorted by decreasing score, on segs' device.
    """
    if segs.shape[0] == 0:
        return (segs.new_zeros((0, 2)), scores.new_zeros((0,)), labels.new_zeros((0,)))
    if segs.device.type == 'cpu':
        with single_thread():
            return _batched_nms(segs, scores, labels, iou_threshold, min_score, max_seg_num,
                                use_soft_nms, multiclass, sigma, voting_thresh)
    return _batched_nms(segs, scores, labels, iou_threshold, min_score, max_seg_num,
                        use_soft_nms, multiclass, sigma, voting_thresh)


def _batched_nms(segs, scores, labels, iou_threshold, min_score, max_seg_num, use_soft_nms,
                 multiclass, sigma, voting_thresh):
    class_labels = labels if multiclass else None
    if use_soft_nms:
        idx, new_scores = soft_nms_1d(segs, scores, sigma, min_score, max_seg_num, class_labels)
    else:
        idx = nms_1d(segs, scores, iou_threshold, min_score, max_seg_num, class_labels)
        new_scores = scores[idx]
    new_segs, new_labels = segs[idx], labels[idx]
    if not multiclass and voting_thresh > 0 and len(idx) > 0:
        new_segs = score_voting(new_segs, segs, scores, voting_thresh)
    order = torch.sort(new_scores, descending=True, stable=True)[1]
    order = order[:_cap(max_seg_num, len(order))]
    return new_segs[order], new_scores[order], new_labels[order]
