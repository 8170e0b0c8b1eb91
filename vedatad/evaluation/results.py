"""ActivityNet submission JSON:
``{"version", "results": {video_id: [detection]}, "external_data"}``.

A detection is ``{"label": str, "score": float, "segment": [t0, t1]}`` with times in seconds,
t0 <= t1. A video id given twice in a file is an error (``read_json``), not a silent merge.
"""
import json
import math
from pathlib import Path

from vedatad.utils.io import atomic_write_json, read_json

SUBMISSION_VERSION = 'VERSION 1.3'


class ResultsError(ValueError):
    """Malformed submission; the message names the file (or source), the video and the field."""


def _plain_float(value, where):
    # accepts python / numpy / 0-d torch numbers; rejects NaN and inf so the file stays valid JSON
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ResultsError(f'{where}: expected a number, got {value!r}') from None
    if not math.isfinite(number):
        raise ResultsError(f'{where}: expected a finite number, got {value!r}')
    return number


def _plain_detection(det, where):
    if not isinstance(det, dict):
        raise ResultsError(f'{where}: expected an object, got {type(det).__name__}')
    for key in ('label', 'score', 'segment'):
        if key not in det:
            raise ResultsError(f'{where}: field "{key}" missing')
    if not isinstance(det['label'], str):
        raise ResultsError(f'{where}.label: expected a string, got {det["label"]!r}')
    seg = det['segment']
    if len(seg) != 2:
        raise ResultsError(f'{where}.segment: expected [t0, t1], got {seg!r}')
    t0 = _plain_float(seg[0], f'{where}.segment[0]')
    t1 = _plain_float(seg[1], f'{where}.segment[1]')
    if t1 < t0:
        raise ResultsError(f'{where}.segment: {[t0, t1]} ends before it starts')
    return {'label': det['label'], 'score': _plain_float(det['score'], f'{where}.score'),
            'segment': [t0, t1]}


def save_results(path, results: dict, external_data=None):
    """Write a submission file atomically (temp file + rename).

    ``results``: {video_id: [{"label", "score", "segment": [t0, t1]}]}; numpy / torch scalars
    are converted to plain floats.
    """
    plain = {}
    for video_id, dets in results.items():
        plain[str(video_id)] = [_plain_detection(d, f'{path}: video {video_id!r}: detection {i}')
                                for i, d in enumerate(dets)]
    payload = {'version': SUBMISSION_VERSION, 'results': plain,
               'external_data': dict(external_data or {})}
    atomic_write_json(path, payload)


def load_results(path) -> dict[str, list[dict]]:
    """Read a submission file; returns its ``results`` mapping (entries are checked when
    evaluated, see ``vedatad.evaluation.inputs``)."""
    path = Path(path)
    data = read_json(path, ResultsError)
    if not isinstance(data, dict) or not isinstance(data.get('results'), dict):
        raise ResultsError(f'{path}: missing top-level "results" object '
                           '(expected the ActivityNet submission format)')
    for video_id, dets in data['results'].items():
        if not isinstance(dets, list):
            raise ResultsError(f'{path}: video {video_id!r}: expected a list of detections, '
                               f'got {type(dets).__name__}')
    return data['results']


def detections_to_results(detections, label_names) -> dict[str, list[dict]]:
    """Model outputs -> submission mapping.

    ``detections``: iterable of ``{'video_id', 'segments' (N, 2) seconds, 'scores' (N,),
    'labels' (N,) class indices}`` (tensors or arrays); ``label_names``: index -> name
    (a list or a dict).
    """
    results = {}
    for det in detections:
        segs = _to_list(det['segments'])
        scores = _to_list(det['scores'])
        labels = _to_list(det['labels'])
        results.setdefault(det['video_id'], []).extend(
            {'label': label_names[int(lab)], 'score': float(s), 'segment': [float(a), float(b)]}
            for (a, b), s, lab in zip(segs, scores, labels))
    return results


def _to_list(values):
    if hasattr(values, 'detach'):   # torch tensor
        values = values.detach().cpu()
    return values.tolist() if hasattr(values, 'tolist') else list(values)
