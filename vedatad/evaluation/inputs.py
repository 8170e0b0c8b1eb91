"""Turn ground truth and predictions into flat numpy arrays for the evaluator.

Conventions (the official ActivityNet evaluator's, unless said otherwise):
- classes = the labels that occur in the evaluated ground truth (subset);
- predictions whose video has no ground truth in the subset stay in: they are false positives;
- prediction labels unknown to the ground truth file are an error (or dropped with a warning
  when ``ignore_unknown_labels``); labels known to the file but without instances in the
  evaluated subset are not evaluated classes, so their predictions are ignored (warning);
- a video id may carry the YouTube ``v_`` prefix on one side only; such ids are matched
  (warning with the count);
- a detection ending before it starts (t1 < t0) is an error naming the video and the entry;
  a video id given twice in one file is an error (``read_json``).
"""
import warnings
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np

from vedatad.data.annotations import AnnotationError, VideoAnnotation, load_annotations
from vedatad.utils.io import read_json

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
        database = read_json(ground_truth, AnnotationError)['database']
        known = {ann['label'] for v in database.values() if isinstance(v, dict)
                 for ann in (v.get('annotations') or [])
                 if isinstance(ann, dict) and isinstance(ann.get('label'), str)}
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


def _flatten(results, source):
    """All detections as flat columns -> (video ids with detections, counts per video,
    labels list, scores (P,), segments (P, 2)); errors name the video, entry and field."""
    ids = [vid for vid, dets in results.items() if dets]
    per_video = [results[vid] for vid in ids]
    flat = list(chain.from_iterable(per_video))
    try:
        counts = np.fromiter(map(len, per_video), np.int64, len(per_video))
        labels = list(map(itemgetter('label'), flat))
        scores = np.fromiter(map(itemgetter('score'), flat), np.float64, len(flat))
        seg_lists = list(map(itemgetter('segment'), flat))
        ok = (all(isinstance(d, list) for d in per_video)
              and set(map(len, seg_lists)) <= {2})
        segs = np.fromiter(chain.from_iterable(seg_lists), np.float64,
                           2 * len(flat)).reshape(-1, 2) if ok else None
        ok = ok and np.isfinite(scores).all() and np.isfinite(segs).all()
    except (KeyError, TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        for vid, dets in zip(ids, per_video):
            _check_video(vid, dets, source)
        raise ResultsError(f'{source}: malformed detections')
    _check_order(segs, ids, counts, source)
    return ids, counts, labels, scores, segs


def _check_order(segs, ids, counts, source):
    """A detection that ends before it starts has no meaning (swapped columns?): name it."""
    reversed_ = np.flatnonzero(segs[:, 1] < segs[:, 0])
    if reversed_.size == 0:
        return
    first = int(reversed_[0])
    ends = np.cumsum(counts)
    video = int(np.searchsorted(ends, first, side='right'))
    entry = first - (int(ends[video - 1]) if video else 0)
    raise ResultsError(f'{source}: video {ids[video]!r}: detection {entry}: segment '
                       f'{segs[first].tolist()} ends before it starts ({reversed_.size} such '
                       'detection(s) in the file); expected [t0, t1] with t0 <= t1')


def _check_video(video_id, dets, source):
    """Raise a ResultsError naming the first malformed detection of one video, if any."""
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
            raise ResultsError(f'{where}: field "segment": expected [t0, t1], '
                               f'got {d["segment"]!r}')
        if not np.isfinite([score, *seg]).all():
            raise ResultsError(f'{where}: non-finite score or segment ({score}, {seg})')


_NOT_EVALUATED, _UNKNOWN = -1, -2


def _class_ids(labels, class_index, known, ignore_unknown, source):
    """Class index per prediction: >= 0 evaluated, -1 label without GT in the subset,
    -2 label unknown to the ground truth (an error unless ignore_unknown)."""
    unique = set(labels)
    bad_type = next((lab for lab in unique if not isinstance(lab, str)), None)
    if bad_type is not None:
        raise ResultsError(f'{source}: field "label": expected a string, got {bad_type!r}')
    unknown = sorted(unique - known)
    if unknown and not ignore_unknown:
        shown = ', '.join(repr(x) for x in unknown[:20])
        more = f' and {len(unknown) - 20} more' if len(unknown) > 20 else ''
        raise ValueError(f'{source}: labels not in the ground truth: {shown}{more} '
                         '(use ignore_unknown_labels / --ignore-unknown-labels to drop them)')
    lookup = {lab: class_index.get(lab, _NOT_EVALUATED if lab in known else _UNKNOWN)
              for lab in unique}
    cls = np.fromiter(map(lookup.__getitem__, labels), np.int64, len(labels))
    n_unknown = int((cls == _UNKNOWN).sum())
    n_other = int((cls == _NOT_EVALUATED).sum())
    if n_unknown:
        _warn(f'{source}: dropped {n_unknown} prediction(s) with {len(unknown)} label(s) '
              f'unknown to the ground truth: {", ".join(repr(x) for x in unknown[:20])}')
    if n_other:
        _warn(f'{source}: ignored {n_other} prediction(s) of labels that have no ground-truth '
              'instance in the evaluated subset')
    return cls


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

    ids, counts, labels, scores, segs = _flatten(results, source)
    outside = []
    group_video = np.empty(len(ids), dtype=np.int64)
    for i, raw_id in enumerate(ids):
        vid = mapping.get(raw_id, raw_id)
        if vid not in video_index:
            outside.append(i)
            video_index[vid] = len(video_names)
            video_names.append(vid)
        group_video[i] = video_index[vid]
    cls = _class_ids(labels, class_index, known, ignore_unknown_labels, source)
    keep = cls >= 0
    if keep.all():
        keep = slice(None)            # skips copying every column
    pred = DetectionArrays(np.repeat(group_video, counts)[keep], cls[keep],
                           np.ascontiguousarray(segs[keep, 0]), np.ascontiguousarray(segs[keep, 1]),
                           scores[keep])
    if outside:
        n = int(counts[outside].sum())
        _warn(f'{source}: {n} prediction(s) in {len(outside)} video(s) without ground truth in '
              'the evaluated subset are counted as false positives')
    return EvaluationInputs(gt, pred, class_names, video_names)
