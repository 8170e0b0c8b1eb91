"""1-D NMS / soft-NMS / score voting against plain loop references written here."""
import math

import pytest
import torch

from vedatad.ops import batched_nms, nms_1d, score_voting, soft_nms_1d

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


# --------------------------------------------------------------- loop references (float32)

def _overlap(a, b):
    f = torch.float32
    a0, a1, b0, b1 = (torch.tensor(x, dtype=f) for x in (a[0], a[1], b[0], b[1]))
    inter = torch.clamp(torch.minimum(a1, b1) - torch.maximum(a0, b0), min=0)
    return float(inter / ((a1 - a0 + 1e-6) + (b1 - b0 + 1e-6) - inter))


def ref_soft_nms(segs, scores, sigma, min_score):
    """One class. Returns [(index, decayed score)] in the order taken."""
    current = {i: torch.tensor(s, dtype=torch.float32) for i, s in enumerate(scores)}
    out = []
    while current:
        best = max(current, key=lambda i: (float(current[i]), -i))   # ties: lower index
        score = current.pop(best)
        out.append((best, float(score)))
        for i in list(current):
            w = torch.exp(torch.tensor(-_overlap(segs[best], segs[i]) ** 2 / sigma,
                                       dtype=torch.float32))
            current[i] = current[i] * w
            if float(current[i]) < min_score:
                del current[i]
    return out


def ref_hard_nms(segs, scores, thr, min_score):
    order = sorted((i for i in range(len(scores)) if min_score <= 0 or scores[i] > min_score),
                   key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(_overlap(segs[i], segs[k]) < thr for k in kept):
            kept.append(i)
    return [(i, scores[i]) for i in kept]


def ref_batched(segs, scores, labels, thr, min_score, max_num, soft, multiclass, sigma, vote):
    groups = sorted(set(labels)) if multiclass else [None]
    picked = []
    for c in groups:
        idx = [i for i in range(len(segs)) if c is None or labels[i] == c]
        sub_segs, sub_scores = [segs[i] for i in idx], [scores[i] for i in idx]
        res = (ref_soft_nms(sub_segs, sub_scores, sigma, min_score) if soft
               else ref_hard_nms(sub_segs, sub_scores, thr, min_score))
        picked += [(idx[j], s) for j, s in res[:max_num]]
    picked.sort(key=lambda p: (-p[1], p[0]))
    picked = picked[:max_num]
    out_segs = [list(segs[i]) for i, _ in picked]
    if not multiclass and vote > 0:
        out_segs = [ref_vote(s, segs, scores, vote) for s in out_segs]
    return out_segs, [s for _, s in picked], [labels[i] for i, _ in picked]


def ref_vote(seg, segs, scores, thr):
    num0 = num1 = den = 0.0
    for s, sc in zip(segs, scores):
        inter = max(0.0, min(seg[1], s[1]) - max(seg[0], s[0]))
        iou = inter / ((seg[1] - seg[0]) + (s[1] - s[0]) - inter)
        if iou >= thr:
            num0 += sc * iou * s[0]
            num1 += sc * iou * s[1]
            den += sc * iou
    return [num0 / den, num1 / den]


# ------------------------------------------------------------------------------ data

def _random_case(seed, n=60, num_classes=3, tie_levels=None):
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(n, generator=g) * 50
    lengths = torch.rand(n, generator=g) * 10 + 0.5
    segs = torch.stack([centers - lengths / 2, centers + lengths / 2], dim=1)
    # clusters of near-duplicates make suppression matter
    segs[n // 2:] = segs[:n - n // 2] + torch.randn(n - n // 2, 2, generator=g) * 0.5
    segs = torch.sort(segs, dim=1)[0]
    scores = torch.rand(n, generator=g)
    if tie_levels:
        scores = torch.round(scores * tie_levels) / tie_levels + 0.01
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return segs.float(), scores.float(), labels


# ------------------------------------------------------------------------------ tests

@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('soft', [True, False], ids=['soft', 'hard'])
@pytest.mark.parametrize('multiclass', [True, False], ids=['classwise', 'agnostic'])
@pytest.mark.parametrize('tie_levels', [None, 4], ids=['unique', 'ties'])
def test_batched_nms_matches_loop_reference(device, soft, multiclass, tie_levels):
    for seed in range(3):
        segs, scores, labels = _random_case(seed, tie_levels=tie_levels)
        kwargs = dict(iou_threshold=0.4, min_score=0.05, max_seg_num=25, use_soft_nms=soft,
                      multiclass=multiclass, sigma=0.5, voting_thresh=0.7)
        got = batched_nms(segs.to(device), scores.to(device), labels.to(device), **kwargs)
        want_segs, want_scores, want_labels = ref_batched(
            segs.tolist(), scores.tolist(), labels.tolist(), 0.4, 0.05, 25, soft, multiclass,
            0.5, 0.7)
        assert all(t.device.type == device for t in got)
        assert got[2].tolist() == want_labels
        torch.testing.assert_close(got[1].cpu(), torch.tensor(want_scores), atol=1e-6, rtol=0)
        torch.testing.assert_close(got[0].cpu(), torch.tensor(want_segs), atol=1e-4, rtol=0)
        assert len(want_labels) == 25 or not soft  # the cap binds for soft-NMS
        assert torch.all(got[1][:-1] >= got[1][1:])


@pytest.mark.parametrize('soft', [True, False], ids=['soft', 'hard'])
def test_classwise_nms_with_a_dominant_class_matches_loop_reference(soft):
    # one class holds most candidates and most of the best scores: it takes many steps while
    # the other classes stop early; the result must still be the loop reference's
    g = torch.Generator().manual_seed(11)
    segs, scores, _ = _random_case(4, n=200)
    labels = torch.where(torch.rand(200, generator=g) < 0.7, 2,
                         torch.randint(0, 9, (200,), generator=g))
    scores = torch.where(labels == 2, scores * 0.5 + 0.5, scores * 0.6)
    for max_num in (5, 40, 0):
        got = batched_nms(segs, scores, labels, 0.3, 0.02, max_num, use_soft_nms=soft)
        want_segs, want_scores, want_labels = ref_batched(
            segs.tolist(), scores.tolist(), labels.tolist(), 0.3, 0.02, max_num or 10 ** 6,
            soft, True, 0.5, 0.0)
        assert got[2].tolist() == want_labels
        torch.testing.assert_close(got[1], torch.tensor(want_scores), atol=1e-6, rtol=0)
        torch.testing.assert_close(got[0], torch.tensor(want_segs), atol=1e-6, rtol=0)


def test_soft_nms_by_hand():
    segs = torch.tensor([[0.0, 10.0], [0.0, 10.0], [5.0, 15.0], [40.0, 50.0]])
    scores = torch.tensor([0.9, 0.9, 0.8, 0.1])
    idx, out = soft_nms_1d(segs, scores, sigma=0.5, min_score=0.0)
    # equal scores: index 0 first; the identical copy overlaps by 10/(10+2e-6) ~ 1
    assert idx.tolist()[:2] == [0, 2]
    iou_02 = 5 / (10 + 10 + 2e-6 - 5)
    assert out[1].item() == pytest.approx(0.8 * math.exp(-iou_02 ** 2 / 0.5), rel=1e-6)
    # the copy decays below the far-away 0.1 segment
    assert out[3].item() == pytest.approx(
        0.9 * math.exp(-1 / 0.5) * math.exp(-iou_02 ** 2 / 0.5), rel=1e-5)
    assert idx.tolist() == [0, 2, 3, 1]
    assert out[2].item() == pytest.approx(0.1)
    # min_score drops decayed segments but never the one taken first
    idx, out = soft_nms_1d(segs, scores, sigma=0.5, min_score=0.5)
    assert idx.tolist() == [0, 2]
    idx, _ = soft_nms_1d(segs[3:], scores[3:], sigma=0.5, min_score=0.5)
    assert idx.tolist() == [0]


def test_hard_nms_by_hand():
    segs = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [0.0, 10.0], [21.0, 29.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.9, 0.05])
    keep = nms_1d(segs, scores, iou_threshold=0.5, min_score=0.0)
    assert keep.tolist() == [0, 2]            # tie 0/3: lower index kept, 3 suppressed
    keep = nms_1d(segs, scores, iou_threshold=0.5, min_score=0.0,
                  labels=torch.tensor([0, 0, 0, 1, 0]))
    assert keep.tolist() == [0, 3, 2]         # class 1 copy survives class-wise NMS
    keep = nms_1d(segs, scores, iou_threshold=0.95, min_score=0.1, max_num=3)
    assert keep.tolist() == [0, 1, 2]         # 0.05 filtered by min_score, cap 3


def test_score_voting_by_hand():
    kept = torch.tensor([[0.0, 10.0]])
    all_segs = torch.tensor([[0.0, 10.0], [2.0, 10.0], [30.0, 40.0]])
    all_scores = torch.tensor([1.0, 0.5, 1.0])
    refined = score_voting(kept, all_segs, all_scores, iou_threshold=0.75)
    w0, w1 = 1.0 * 1.0, 0.5 * 0.8
    assert refined[0].tolist() == pytest.approx([(w1 * 2.0) / (w0 + w1), 10.0])
    # nothing above the threshold with positive weight: unchanged
    assert score_voting(kept, all_segs[2:], all_scores[2:], 0.75).tolist() == [[0.0, 10.0]]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('soft', [True, False])
def test_empty_inputs(device, soft):
    segs = torch.zeros((0, 2), device=device)
    scores = torch.zeros((0,), device=device)
    labels = torch.zeros((0,), dtype=torch.long, device=device)
    out = batched_nms(segs, scores, labels, 0.5, 0.001, 100, use_soft_nms=soft,
                      multiclass=False)
    assert [tuple(t.shape) for t in out] == [(0, 2), (0,), (0,)]
    assert out[2].dtype == torch.long and out[0].device.type == device
    # everything filtered by min_score (hard NMS) is empty, not an error
    out = batched_nms(torch.tensor([[0.0, 1.0]], device=device),
                      torch.tensor([0.0001], device=device),
                      torch.tensor([0], device=device), 0.5, 0.001, 100, use_soft_nms=False)
    assert out[0].shape == (0, 2)


def test_no_cap_when_max_seg_num_not_positive():
    segs, scores, labels = _random_case(5, n=40)
    out = batched_nms(segs, scores, labels, 0.5, 0.0, 0, use_soft_nms=True)
    assert len(out[1]) == 40                  # soft-NMS with min_score 0 drops nothing


def test_batched_nms_runs_single_threaded_and_restores_thread_count():
    from vedatad.ops import nms as nms_mod
    g = torch.Generator().manual_seed(3)
    starts = torch.rand(300, generator=g) * 100
    segs = torch.stack([starts, starts + 1 + torch.rand(300, generator=g) * 20], 1)
    scores, labels = torch.rand(300, generator=g), torch.randint(0, 4, (300,), generator=g)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        real = nms_mod.soft_nms_1d
        nms_mod.soft_nms_1d = lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1]
        try:
            out = nms_mod.batched_nms(segs, scores, labels, 0.1, 0.001, 50)
        finally:
            nms_mod.soft_nms_1d = real
        ref = nms_mod._batched_nms(segs, scores, labels, 0.1, 0.001, 50, True, True, 0.5, 0.75)
        assert seen == [1] and torch.get_num_threads() == 2
        for a, b in zip(out, ref):
            assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)
