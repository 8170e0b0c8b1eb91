"""Turn ground truth and predictions into flat numpy arrays for the evaluator.

Conventions (the official ActivityNet evaluator's, unless said otherwise):
- classes = the labels that occur in the evaluated ground truth (subset);
- predictions whose video has no ground truth in the subset stay in: they are false positives;
- prediction labels unknown to the ground truth file are an error (or dropped with a warning
  when ``ignore_unknown_labels``); labels known to the file but without instances in the
  evaluated subset are not evaluated classes, so their predictions are ignored (warning);
- a video id may carry the YouTube ``v_`` prefix on one side only; such ids are matched
  (warning with the count).
"""
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vedatad.data.annotations import VideoAnnotation, load_annotations

from .results import ResultsError, load_results


class EvaluationWarning(UserWarning):
    """Input accepted with an adjustment (counts in the message)."""


@dataclass
class DetectionArrays:
    """Flat arrays, one row per ground-truth instance or prediction.

    ``video`` indexes ``video_names`` (shared by GT and predictions), ``cls`` indexes
    ``class_names`` (sorted GT labels).
    """
    video: np.ndarray       # int64 (N,)
    cls: np.ndarray         # int64 (N,)
    t0: np.ndarray          # float64 (N,)
    t1: np.ndarray          # float64 (N,)
    score: np.ndarray | None = None   # float64 (N,), predictions only


@dataclass
class EvaluationInputs:
    gt: DetectionArrays
    pred: DetectionArrays
    class_names: list[str]
    video_names: list[str]


def _warn(message):
    warnings.warn(message, EvaluationWarning, stacklevel=4)


def load_ground_truth(ground_truth, subset=None):
    """-> (videos of the subset, labels known anywhere in the source)."""
    if isinstance(ground_truth, (str, Path)):
        videos = load_annotations(ground_truth, subset=subset)
        with open(ground_truth, encoding='utf-8') as f:
            database = json.load(f)['database']
        known = {ann.get('label') for v in database.values() if isinstance(v, dict)
                 for ann in (v.get('annotations') or []) if isinstance(ann, dict)}
        return videos, known
    if not isinstance(ground_truth, dict):
        raise TypeError('ground_truth must be a path or a dict[str, VideoAnnotation], '
                        f'got {type(ground_truth).__name__}')
    known = {seg.label for v in ground_truth.values() for seg in v.segments}
    if subset is not None:
        ground_truth = {k: v for k, v in ground_truth.items()
                        if v.subset.lower() == subset.lower()}
    return ground_truth, known


def _gt_arrays(videos: dict[str, VideoAnnotation], video_index, class_index):
    rows = [(video_index[vid], class_index[s.label], s.start, s.end)
            for vid, v in videos.items() for s in v.segments]
    if not rows:
        return DetectionArrays(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64,
                                                                  np.float64, np.float64)))
    video, cls, t0, t1 = zip(*rows)
    return DetectionArrays(np.asarray(video, np.int64), np.asarray(cls, np.int64),
                           np.asarray(t0, np.float64), np.asarray(t1, np.float64))


def _results_of(predictions):
    if isinstance(predictions, (str, Path)):
        return load_results(predictions), str(predictions)
    if not isinstance(predictions, dict):
        raise TypeError('predictions must be a path or a dict {video_id: [detection]}, '
                        f'got {type(predictions).__name__}')
    if isinstance(predictions.get('results'), dict):  # a whole submission object
        return predictions['results'], 'predictions'
    return predictions, 'predictions'


def _match_prefix(pred_ids, gt_ids):
    """Map prediction video ids onto ground-truth ids that differ only by a ``v_`` prefix."""
    mapping, added, removed = {}, 0, 0
    for vid in pred_ids:
        if vid in gt_ids:
            continue
        if 'v_' + vid in gt_ids:
            mapping[vid] = 'v_' + vid
            added += 1
        elif vid.startswith('v_') and vid[2:] in gt_ids:
            mapping[vid] = vid[2:]
            removed += 1
    if mapping:
        how = []
        if added:
            how.append(f'{added} by adding the "v_" prefix')
        if removed:
            how.append(f'{removed} by removing the "v_" prefix')
        _warn(f'matched {len(mapping)} prediction video id(s) to ground-truth ids '
              f'({", ".join(how)})')
    return mapping


def _flatten_video(video_id, dets, source):
    """-> labels, scores, (N, 2) segments of one video, with errors that name the entry."""
    try:
        labels = [d['label'] for d in dets]
        scores = np.asarray([d['score'] for d in dets], dtype=np.float64)
        segs = np.asarray([d['segment'] for d in dets], dtype=np.float64).reshape(len(dets), -1)
        ok = segs.shape[1] == 2 and np.isfinite(scores).all() and np.isfinite(segs).all()
    except (KeyError, TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        _raise_first_bad(video_id, dets, source)
    return labels, scores, segs


def _raise_first_bad(video_id, dets, source):
    if not isinstance(dets, list):
        raise ResultsError(f'{source}: video {video_id!r}: expected a list of detections')
    for i, d in enumerate(dets):
        where = f'{source}: video {video_id!r}: detection {i}'
        if not isinstance(d, dict):
            raise ResultsError(f'{where}: expected an object, got {type(d).__name__}')
        for key in ('label', 'score', 'segment'):
            if key not in d:
                raise ResultsError(f'{where}: field "{key}" missing')
        try:
            score = float(d['score'])
            seg = [float(x) for x in d['segment']]
        except (TypeError, ValueError):
            raise ResultsError(f'{where}: non-numeric score or segment '
                               f'({d["score"]!r}, {d["segment"]!r})') from None
        if len(seg) != 2:
            raise ResultsError(f'{where}: field "segment": expected [t0, t1], got {d["segment"]!r}')
        if not np.isfinite([score, *seg]).all():
            raise ResultsError(f'{where}: non-finite score or segment ({score}, {seg})')
    raise ResultsError(f'{source}: video {video_id!r}: malformed detections')


def _check_labels(labels, class_index, known, ignore_unknown, source):
    """-> boolean mask of predictions to keep."""
    bad_type = next((lab for lab in labels if not isinstance(lab, str)), None)
    if bad_type is not None:
        raise ResultsError(f'{source}: field "label": expected a string, got {bad_type!r}')
    unknown = sorted(set(labels) - known)
    if unknown:
        if not ignore_unknown:
            shown = ', '.join(repr(x) for x in unknown[:20])
            more = f' and {len(unknown) - 20} more' if len(unknown) > 20 else ''
            raise ValueError(f'{source}: labels not in the ground truth: {shown}{more} '
                             '(use ignore_unknown_labels / --ignore-unknown-labels to drop them)')
    keep = np.fromiter((lab in class_index for lab in labels), dtype=bool, count=len(labels))
    n_unknown = int(sum(1 for lab in labels if lab not in known))
    n_other = int((~keep).sum()) - n_unknown
    if n_unknown:
        _warn(f'{source}: dropped {n_unknown} prediction(s) with {len(unknown)} label(s) '
              f'unknown to the ground truth: {", ".join(repr(x) for x in unknown[:20])}')
    if n_other:
        _warn(f'{source}: ignored {n_other} prediction(s) of labels that have no ground-truth '
              'instance in the evaluated subset')
    return keep


def prepare_inputs(ground_truth, predictions, subset=None,
                   ignore_unknown_labels=False) -> EvaluationInputs:
    videos, known = load_ground_truth(ground_truth, subset)
    class_names = sorted({s.label for v in videos.values() for s in v.segments})
    if not class_names:
        raise ValueError(f'no ground-truth instances found (subset={subset!r})')
    class_index = {name: i for i, name in enumerate(class_names)}
    results, source = _results_of(predictions)
    mapping = _match_prefix(results.keys(), videos.keys())

    video_names = list(videos)
    video_index = {vid: i for i, vid in enumerate(video_names)}
    gt = _gt_arrays(videos, video_index, class_index)

    labels, scores, segs, vids = [], [], [], []
    outside = set()
    for raw_id, dets in results.items():
        if not dets:
            continue
        lab, sc, sg = _flatten_video(raw_id, dets, source)
        vid = mapping.get(raw_id, raw_id)
        if vid not in video_index:
            outside.add(vid)
            video_index[vid] = len(video_names)
            video_names.append(vid)
        labels.extend(lab)
        scores.append(sc)
        segs.append(sg)
        vids.append(np.full(len(lab), video_index[vid], dtype=np.int64))
    pred = _pred_arrays(labels, scores, segs, vids, class_index, known,
                        ignore_unknown_labels, source)
    if outside:
        n = int(np.isin(pred.video, [video_index[v] for v in outside]).sum())
        _warn(f'{source}: {n} prediction(s) in {len(outside)} video(s) without ground truth in '
              'the evaluated subset are counted as false positives')
    return EvaluationInputs(gt, pred, class_names, video_names)


def _pred_arrays(labels, scores, segs, vids, class_index, known, ignore_unknown, source):
    if not labels:
        empty_f = np.zeros(0, np.float64)
        return DetectionArrays(np.zeros(0, np.int64), np.zeros(0, np.int64),
                               empty_f, empty_f.copy(), empty_f.copy())
    keep = _check_labels(labels, class_index, known, ignore_unknown, source)
    cls = np.fromiter((class_index.get(lab, -1) for lab in labels), dtype=np.int64,
                      count=len(labels))
    segs = np.concatenate(segs)
    return DetectionArrays(np.concatenate(vids)[keep], cls[keep], segs[keep, 0].copy(),
                           segs[keep, 1].copy(), np.concatenate(scores)[keep])
