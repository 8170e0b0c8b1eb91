"""Speed of the vectorised detection evaluator against a plain per-prediction loop.

    python benchmarks/bench_eval.py [--videos 4926] [--classes 200] [--preds-per-video 100]
        [--ref-classes N]

Synthetic, deterministic data at ActivityNet-1.3 validation scale: 4,926 videos, 200 classes,
~1.5 ground-truth instances per video (as ActivityNet), 100 predictions per video (the
ActionFormer ActivityNet output size), half of them near a ground-truth instance. Both
evaluators start from the same in-memory submission dict and use the ActivityNet thresholds
0.5:0.95:10. The reference is the official algorithm written as the official evaluator runs
it: one prediction at a time, per class, ground truth looked up per video; it only computes
AP, while the timed vectorised call also parses and checks the input and computes
Recall@1x/5x. With --ref-classes N the reference runs on the first N classes only and its
time is extrapolated to all classes (the output says so).
"""
import argparse
import math
import time
import warnings
from collections import defaultdict

import numpy as np

from vedatad.data.annotations import Segment, VideoAnnotation
from vedatad.evaluation import evaluate_detections, parse_tiou_thresholds


def make_dataset(num_videos, num_classes, preds_per_video, seed=0):
    """-> (ground truth {vid: VideoAnnotation}, predictions {vid: [detection]})."""
    rng = np.random.default_rng(seed)
    labels = [f'class_{i:03d}' for i in range(num_classes)]
    gt, results = {}, {}
    for v in range(num_videos):
        vid = f'video_{v:05d}'
        duration = float(rng.uniform(30, 240))
        cls = int(rng.integers(num_classes))                 # one action class per video
        segments = []
        for _ in range(1 + rng.poisson(0.5)):
            length = duration * rng.uniform(0.05, 0.5)
            start = rng.uniform(0, duration - length)
            segments.append(Segment(start, start + length, labels[cls]))
        gt[vid] = VideoAnnotation(vid, 'validation', duration, None, segments)
        results[vid] = _predictions(rng, segments, duration, cls, labels, preds_per_video)
    return gt, results


def _predictions(rng, segments, duration, cls, labels, n):
    near = n // 2
    anchor = rng.integers(len(segments), size=near)
    starts = np.array([segments[i].start for i in anchor])
    ends = np.array([segments[i].end for i in anchor])
    jitter = (ends - starts)[:, None] * rng.normal(0, 0.15, size=(near, 2))
    t0 = np.concatenate([starts + jitter[:, 0], rng.uniform(0, duration, n - near)])
    t1 = np.concatenate([ends + jitter[:, 1], t0[near:] + rng.exponential(duration / 8, n - near)])
    t0, t1 = np.minimum(t0, t1), np.maximum(t0, t1)
    other = int(rng.integers(len(labels)))                  # second-guess class
    pred_cls = np.where(rng.uniform(size=n) < 0.7, cls, other)
    scores = rng.uniform(size=n) * np.where(np.arange(n) < near, 1.0, 0.6)
    return [{'label': labels[c], 'score': float(s), 'segment': [float(a), float(b)]}
            for c, s, a, b in zip(pred_cls, scores, np.clip(t0, 0, None), t1)]


# --------------------------------------------------------------------- plain reference loops

def _group_inputs(gt, results):
    gt_by_class = defaultdict(lambda: defaultdict(list))
    npos = defaultdict(int)
    for vid, video in gt.items():
        for s in video.segments:
            gt_by_class[s.label][vid].append((s.start, s.end))
            npos[s.label] += 1
    preds_by_class = defaultdict(list)
    for vid, dets in results.items():
        for d in dets:
            preds_by_class[d['label']].append((-d['score'], vid, *d['segment']))
    return gt_by_class, npos, preds_by_class


def reference_ap(gt, results, tious, classes, per_prediction):
    """Official rules, one prediction at a time. -> {label: [AP per threshold]}.

    per_prediction is the body run for each prediction: ``_numpy_step`` does what the
    official ``compute_average_precision_detection`` does per prediction (numpy tIoU against
    the video's ground truth, argsort, scan per threshold) minus its pandas look-ups;
    ``_python_step`` is the same in pure python (faster for a handful of instances)."""
    gt_by_class, npos, preds_by_class = _group_inputs(gt, results)
    out = {}
    for c in classes:
        gt_videos = {vid: np.asarray(segs) for vid, segs in gt_by_class[c].items()}
        preds = sorted(preds_by_class[c])              # canonical: -score, video, t0, t1
        taken = np.zeros((len(tious), npos[c]), dtype=bool)
        offsets, n = {}, 0
        for vid, segs in gt_videos.items():            # column of each GT instance in taken
            offsets[vid], n = n, n + len(segs)
        tp = np.zeros((len(tious), len(preds)))
        for k, (_, vid, p0, p1) in enumerate(preds):
            if vid in gt_videos:
                per_prediction(p0, p1, gt_videos[vid], taken, offsets[vid], tious, tp, k)
        out[c] = [_reference_interpolated_ap(tp[t], npos[c]) for t in range(len(tious))]
    return out


def _greedy_match(order, ious, taken, offset, tious, tp, k):
    """Per threshold: the best-overlapping ground truth not yet taken, if above it."""
    for t, thr in enumerate(tious):
        for j in order:
            if ious[j] < thr:
                break
            if taken[t, offset + j]:
                continue
            taken[t, offset + j] = True
            tp[t, k] = 1
            break


def _numpy_step(p0, p1, segs, taken, offset, tious, tp, k):
    inter = np.clip(np.minimum(p1, segs[:, 1]) - np.maximum(p0, segs[:, 0]), 0, None)
    ious = inter / ((segs[:, 1] - segs[:, 0]) + (p1 - p0) - inter)
    order = ious.argsort(kind='stable')[::-1]
    _greedy_match(order, ious, taken, offset, tious, tp, k)


def _python_step(p0, p1, segs, taken, offset, tious, tp, k):
    ious = []
    for g0, g1 in segs.tolist():
        inter = max(0.0, min(p1, g1) - max(p0, g0))
        ious.append(inter / ((g1 - g0) + (p1 - p0) - inter))
    order = sorted(range(len(ious)), key=lambda j: (-ious[j], -j))
    _greedy_match(order, ious, taken, offset, tious, tp, k)


def _reference_interpolated_ap(hits, npos):
    precision, recall, n_tp = [], [], 0
    for k, h in enumerate(hits):
        n_tp += h
        precision.append(n_tp / (k + 1))
        recall.append(n_tp / npos)
    best, ap = 0.0, 0.0
    for k in range(len(hits) - 1, -1, -1):       # precision made monotone from the right
        best = max(best, precision[k])
        if hits[k]:
            ap += (recall[k] - (recall[k - 1] if k else 0.0)) * best
    return ap


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--videos', type=int, default=4926)
    parser.add_argument('--classes', type=int, default=200)
    parser.add_argument('--preds-per-video', type=int, default=100)
    parser.add_argument('--ref-classes', type=int, default=0,
                        help='run the references on this many classes and extrapolate (0: all)')
    args = parser.parse_args()
    tious = parse_tiou_thresholds('0.5:0.95:10')

    (gt, results), wall, _ = _timed(lambda: make_dataset(args.videos, args.classes,
                                                         args.preds_per_video))
    n_preds = sum(len(v) for v in results.values())
    n_gt = sum(len(v.segments) for v in gt.values())
    print(f'data: {len(gt)} videos, {args.classes} classes, {n_gt} ground-truth instances, '
          f'{n_preds} predictions (made in {wall:.1f} s); tIoU thresholds 0.5:0.95:10')

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        metrics, fast_wall, fast_cpu = _timed(
            lambda: evaluate_detections(gt, results, tiou_thresholds=tious))
    classes = sorted(metrics['per_class_ap'])
    ref_classes = classes[:args.ref_classes] if args.ref_classes > 0 else classes
    scale = len(classes) / len(ref_classes)
    note = ' [extrapolated]' if scale > 1 else ''

    rows = [('vectorised: vedatad.evaluation (incl. input checks + Recall@kx)',
             fast_wall, fast_cpu, f'{100 * metrics["average_mAP"]:.4f}', 1.0)]
    worst = 0.0
    for name, step in [('loop, numpy per prediction (as the official evaluator)', _numpy_step),
                       ('loop, pure python per prediction', _python_step)]:
        ref, wall, cpu = _timed(lambda: reference_ap(gt, results, tious, ref_classes, step))
        worst = max(worst, max(abs(a - b) for c in ref_classes
                               for a, b in zip(ref[c], metrics['per_class_ap'][c])))
        avg = '-' if scale > 1 else f'{100 * np.mean([np.mean(ref[c]) for c in classes]):.4f}'
        rows.append((name + note, wall * scale, cpu * scale, avg, cpu * scale / fast_cpu))

    width = max(len(r[0]) for r in rows)
    print(f'| {"evaluator".ljust(width)} | wall (s) | CPU (s) | average mAP (%) | CPU time ratio |')
    print(f'|{"-" * (width + 2)}|---------:|--------:|----------------:|---------------:|')
    for name, wall, cpu, avg, ratio in rows:
        print(f'| {name.ljust(width)} | {wall:8.2f} | {cpu:7.2f} | {avg:>15} | {ratio:13.1f}x |')
    print(f'max |AP difference| (every class and threshold of the reference run): {worst:.1e}')
    if scale > 1:
        print(f'references timed on {len(ref_classes)}/{len(classes)} classes and scaled linearly')
    print('ratio = reference CPU time / vectorised CPU time (CPU time, since wall time depends '
          'on what else the machine runs)')
    if not worst < 1e-9 or not math.isfinite(worst):
        raise SystemExit(f'MISMATCH between evaluators: {worst}')


if __name__ == '__main__':
    main()
