"""Evaluation protocols: which ground truth counts, and how detections meet it.

``activitynet`` (``tools/eval_detections.py``, ``evaluate_detections`` by default): the
official ActivityNet detection evaluator. Every ground-truth instance of the subset counts,
duplicates included.

``actionformer`` (``tools/test.py`` by default): what the ActionFormer release's ``eval.py``
reports, for every dataset family (THUMOS14, ActivityNet-1.3, EPIC-Kitchens-100, Ego4D-MQ:
the release evaluates them all with one evaluator, only the thresholds differ):

- the ground truth is cleaned as the release's loader does: an instance shorter than 1e-3 s
  is dropped, and so is an instance of the same class (``label_id``) whose start and end are
  within 1e-3 s of one already kept (duplicates count once);
- the classes are the label ids that have ground truth in the evaluated subset. A detection
  of a label id without ground truth in the subset is counted as the release counts it: the
  release renumbers ground-truth ids to their rank among the sorted ids and leaves other ids
  unchanged, so such a detection lands in the class whose rank equals its id (one more false
  positive there), or nowhere when no class has that rank. Both cases are counted in a
  warning;
- thresholds: ``numpy.linspace`` of the family (``RELEASE_TIOUS``) unless given.

Matching, AP and Recall@kx are the same code for both protocols (``detection``, ``recall``),
including the fixed rule for equal scores (the release's unstable sort leaves their order to
chance; numbers differ only when tied detections of one class fall on both sides of a match).
"""
import warnings
from dataclasses import replace

import numpy as np

from .inputs import EvaluationWarning
from .results import load_results

PROTOCOLS = ('actionformer', 'activitynet')
DUPLICATE_TOL = 1e-3  # seconds, as the release
RELEASE_TIOUS = {'thumos': (0.3, 0.7, 5), 'anet': (0.5, 0.95, 10), 'epic': (0.1, 0.5, 5),
                 'ego4d': (0.1, 0.5, 5)}
DATASET_FAMILIES = {'Thumos14FeatureDataset': 'thumos', 'ActivityNetFeatureDataset': 'anet',
                    'EpicKitchensFeatureDataset': 'epic', 'Ego4DFeatureDataset': 'ego4d'}


def release_tiou_thresholds(dataset_type):
    """The family's thresholds exactly as the release computes them, or None."""
    family = DATASET_FAMILIES.get(dataset_type)
    return np.linspace(*RELEASE_TIOUS[family]).tolist() if family else None


def clean_ground_truth(videos, subset=None):
    """-> (videos with duplicate / too short instances removed, number removed in
    ``subset``)."""
    from ..data.feature_datasets import drop_duplicate_segments
    wanted = None if subset is None else subset.lower()
    cleaned, removed = {}, 0
    for vid, video in videos.items():
        kept = drop_duplicate_segments(video.segments, DUPLICATE_TOL)
        if wanted is None or video.subset.lower() == wanted:
            removed += len(video.segments) - len(kept)
        cleaned[vid] = replace(video, segments=kept)
    return cleaned, removed


def _label_ids(videos):
    """Label name -> label_id over every video (the release's label_dict), or None when some
    instance has no label_id (then classes are the names)."""
    ids = {}
    for video in videos.values():
        for seg in video.segments:
            if seg.label_id is None:
                return None
            ids[seg.label] = seg.label_id
    return ids


def release_labels(results, videos, subset):
    """Detections relabelled as the release's evaluator counts them (see the module
    docstring): returns (results, moved, dropped)."""
    ids = _label_ids(videos)
    if ids is None:
        return results, 0, 0
    wanted = None if subset is None else subset.lower()
    split_ids = sorted({seg.label_id for v in videos.values()
                        if wanted is None or v.subset.lower() == wanted for seg in v.segments})
    in_split = set(split_ids)
    name_of = {}
    for name, label_id in ids.items():
        name_of.setdefault(label_id, name)
    relabel = {}
    for name, label_id in ids.items():
        if label_id in in_split:
            continue
        relabel[name] = name_of[split_ids[label_id]] if label_id < len(split_ids) else None
    if not relabel:
        return results, 0, 0
    out, moved, dropped = {}, 0, 0
    for vid, dets in results.items():
        kept = []
        for det in dets:
            label = det.get('label') if isinstance(det, dict) else None
            if label not in relabel:
                kept.append(det)
            elif relabel[label] is None:
                dropped += 1
            else:
                kept.append(dict(det, label=relabel[label]))
                moved += 1
        out[vid] = kept
    return out, moved, dropped


def actionformer_inputs(ground_truth, predictions, subset):
    """(cleaned ground truth, relabelled predictions, report) for the ``actionformer``
    protocol; ``ground_truth``: annotation JSON path or dict[str, VideoAnnotation]."""
    from ..data.annotations import load_annotations
    videos = load_annotations(ground_truth) if not isinstance(ground_truth, dict) \
        else dict(ground_truth)
    videos, removed = clean_ground_truth(videos, subset)
    if not isinstance(predictions, dict):
        predictions = load_results(predictions)
    elif isinstance(predictions.get('results'), dict):
        predictions = predictions['results']
    predictions, moved, dropped = release_labels(predictions, videos, subset)
    if moved or dropped:
        warnings.warn(f'{moved + dropped} detection(s) of classes without ground truth in the '
                      f'subset counted as the ActionFormer release does: {moved} as false '
                      f'positives of the class of that rank, {dropped} ignored',
                      EvaluationWarning, stacklevel=3)
    return videos, predictions, {'removed_instances': removed, 'relabelled': moved,
                                 'ignored': dropped}
