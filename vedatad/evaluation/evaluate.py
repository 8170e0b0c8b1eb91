"""Entry point: evaluate a detection submission against ActivityNet-style ground truth."""
from .detection import Groups, average_precision, canonical_order, match_predictions
from .inputs import prepare_inputs
from .protocols import PROTOCOLS, actionformer_inputs
from .recall import topk_recall


def evaluate_detections(ground_truth, predictions, subset=None,
                        tiou_thresholds=(0.3, 0.4, 0.5, 0.6, 0.7), recall_topk=(1, 5),
                        ignore_unknown_labels=False, protocol='activitynet') -> dict:
    """mAP per tIoU threshold (official ActivityNet rules), average mAP, per-class AP and
    Recall@k×N; every value a fraction in [0, 1].

    ``protocol``: 'activitynet' (every ground-truth instance counts, duplicates included) or
    'actionformer' (what the ActionFormer release's eval.py reports: duplicate ground truth
    counted once, see ``protocols``); the result then has ``'ground_truth'`` with the number
    of instances removed and of detections relabelled as the release counts them.

    Equal scores are ranked canonically, so the result never depends on input order:
    decreasing score, then video id, start time, end time (ascending); see
    ``vedatad.evaluation.detection`` for the matching rules and ``inputs`` for how unknown
    labels, videos outside the ground truth and ``v_`` prefixes are handled.

    Args:
        ground_truth: ActivityNet annotation JSON path, or dict[str, VideoAnnotation].
        predictions: submission JSON path, or {video_id: [{"label", "score", "segment"}]}.
        subset: evaluate the ground truth's videos of this subset (case-insensitive);
            None uses all of them.
        tiou_thresholds: list of thresholds (see ``parse_tiou_thresholds`` for strings).
        recall_topk: the k of Recall@k×N.
        ignore_unknown_labels: drop predictions whose label the ground truth does not know
            (with a warning) instead of raising.

    Returns:
        {"tious": [...], "mAP": [...], "average_mAP": x, "per_class_ap": {label: [...]},
         "recall": {"1x": [...], "5x": [...]}}
    """
    tious = [float(t) for t in tiou_thresholds]
    report = None
    if protocol == 'actionformer':
        ground_truth, predictions, report = actionformer_inputs(ground_truth, predictions,
                                                                subset)
    elif protocol != 'activitynet':
        raise ValueError(f'evaluation protocol must be one of {PROTOCOLS}, got {protocol!r}')
    inputs = prepare_inputs(ground_truth, predictions, subset, ignore_unknown_labels)
    gt, pred = inputs.gt, inputs.pred
    num_classes, num_videos = len(inputs.class_names), len(inputs.video_names)
    order = canonical_order(pred, inputs.video_names)
    groups = Groups(gt, pred, order, num_videos)

    tp = match_predictions(groups, pred, tious)                                # T, P
    ap = average_precision(tp, pred.cls, order, gt.cls, num_classes)           # T, C
    recall = topk_recall(groups, gt, pred, num_videos, tious, recall_topk, num_classes)
    mean_ap = ap.mean(axis=1)
    metrics = {
        'tious': tious,
        'mAP': mean_ap.tolist(),
        'average_mAP': float(mean_ap.mean()),
        'per_class_ap': {name: ap[:, c].tolist() for c, name in enumerate(inputs.class_names)},
        'recall': {f'{k}x': recall[:, i].mean(axis=1).tolist()
                   for i, k in enumerate(recall_topk)},
    }
    if report is not None:
        metrics['protocol'] = protocol
        metrics['ground_truth'] = report
    return metrics
