"""1-D non-maximum suppression for temporal segments, pure torch (CPU or GPU).

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

Greedy NMS is sequential, so each step is one vectorised pass over the candidates; the loop
stops after ``max_seg_num`` segments are taken, since later ones can only score lower.
"""
from contextlib import contextmanager

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


class _OverlapRows:
    """Row i: overlap of segment i with all segments, 0 across classes when labels given.

    Rows are computed on demand: the loops take at most max_seg_num rows, usually far fewer
    than the N x N matrix would hold."""

    def __init__(self, segs, labels=None):
        self.segs, self.labels = segs, labels

    def __getitem__(self, i):
        iou = pairwise_iou(self.segs[i].reshape(1, 2), self.segs)[0]            # N
        if self.labels is not None:
            iou = iou * (self.labels == self.labels[i])
        return iou


def _cap(max_num, n):
    return n if max_num is None or max_num <= 0 else min(max_num, n)


def nms_1d(segs, scores, iou_threshold, min_score=0.0, max_num=-1, labels=None):
    """Hard NMS. Returns indices into the inputs of the kept segments, by decreasing score.

    segs (N, 2), scores (N,); labels (N,) makes it class-wise; max_num <= 0: no cap.
    """
    keep_mask = scores > min_score if min_score > 0 else torch.ones_like(scores, dtype=torch.bool)
    candidates = torch.nonzero(keep_mask).squeeze(1)                        # M
    order = candidates[torch.sort(scores[candidates], descending=True, stable=True)[1]]
    segs_o = segs[order]
    labels_o = None if labels is None else labels[order]
    rows = _OverlapRows(segs_o, labels_o)
    same_class = labels_o is not None
    alive = torch.ones(len(order), dtype=torch.bool, device=segs.device)
    kept = []
    limit = _cap(max_num, len(order))
    pos = 0
    while len(kept) < limit:
        # next alive candidate in score order
        remaining = torch.nonzero(alive[pos:])
        if remaining.numel() == 0:
            break
        i = pos + int(remaining[0, 0])
        kept.append(i)
        suppress = rows[i] >= iou_threshold
        if same_class:
            suppress &= labels_o == labels_o[i]
        alive &= ~suppress
        alive[i] = False
        pos = i + 1
    return order[torch.tensor(kept, dtype=torch.long, device=segs.device)]


def soft_nms_1d(segs, scores, sigma=0.5, min_score=0.0, max_num=-1, labels=None):
    """Gaussian soft-NMS. Returns (indices of the taken segments, their decayed scores), in
    the order taken (= decreasing decayed score)."""
    rows = _OverlapRows(segs, labels)
    current = scores.clone()
    alive = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    taken, taken_scores = [], []
    neg_inf = torch.tensor(float('-inf'), dtype=scores.dtype, device=scores.device)
    for _ in range(_cap(max_num, len(scores))):
        i = torch.argmax(torch.where(alive, current, neg_inf))   # first max: lowest index
        if not bool(alive[i]):
            break
        taken.append(i)
        taken_scores.append(current[i].clone())
        alive[i] = False
        current *= torch.exp(-rows[i] ** 2 / sigma)
        alive &= current >= min_score
    if not taken:
        return (torch.zeros(0, dtype=torch.long, device=segs.device),
                torch.zeros(0, dtype=scores.dtype, device=scores.device))
    return torch.stack(taken), torch.stack(taken_scores)


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
