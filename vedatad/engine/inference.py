"""Inference over a dataset on every rank, results gathered on all ranks, in seconds.

The model's ``model(batch, mode='predict')`` returns per video ``video_id``, ``segments``
(N, 2) in seconds, ``scores`` (N,) and ``labels`` (N,). Results become numpy arrays,
are gathered across ranks (the sampler's padding repeats are dropped) and can be turned into
an ActivityNet submission with label names.
"""
import numpy as np
import torch
from tqdm import tqdm

from .dist import all_gather_objects, get_rank


def _to_numpy(result):
    return {'segments': result['segments'].detach().float().cpu().numpy().reshape(-1, 2),
            'scores': result['scores'].detach().float().cpu().numpy().reshape(-1),
            'labels': result['labels'].detach().cpu().numpy().astype(np.int64).reshape(-1)}


@torch.no_grad()
def predict_dataset(model, loader, desc='test', progress=True):
    """video id -> dict of numpy arrays, for the whole dataset (every rank gets all)."""
    model.eval()
    local = {}
    for batch in tqdm(loader, desc=desc, disable=not progress or get_rank() != 0,
                      dynamic_ncols=True, leave=False):
        for result in model(batch, mode='predict'):
            local[result['video_id']] = _to_numpy(result)
    merged = {}
    for part in all_gather_objects(local):
        for video_id, result in part.items():
            merged.setdefault(video_id, result)
    order = dataset_video_ids(loader.dataset)
    if order:  # dataset order, so outputs do not depend on the number of ranks
        merged = {v: merged[v] for v in order if v in merged}
    return merged


def dataset_video_ids(dataset):
    """Video ids in dataset order: ``video_ids`` or ``videos`` (dicts with 'id' or objects
    with ``video_id``); None when the dataset exposes neither."""
    ids = getattr(dataset, 'video_ids', None)
    if callable(ids):
        ids = ids()
    if ids is not None:
        return list(ids)
    videos = getattr(dataset, 'videos', None) or []
    order = []
    for video in videos:
        vid = video.get('id') if isinstance(video, dict) else getattr(video, 'video_id', None)
        if vid is None:
            return None
        order.append(vid)
    return order or None


def dataset_label_names(dataset):
    """Class index -> name: ``label_names``, else the inverse of ``label_map``, else {}."""
    names = getattr(dataset, 'label_names', None)
    if names:
        return dict(names)
    label_map = getattr(dataset, 'label_map', None) or {}
    return {idx: name for name, idx in label_map.items()}


def to_submission(results, label_names):
    """ActivityNet submission entries: {video_id: [{label, score, segment}]}, best first."""
    submission = {}
    for video_id, det in results.items():
        order = np.argsort(-det['scores'], kind='stable')
        submission[video_id] = [
            {'label': str(label_names.get(int(det['labels'][i]), int(det['labels'][i]))),
             'score': float(det['scores'][i]),
             'segment': [float(det['segments'][i, 0]), float(det['segments'][i, 1])]}
            for i in order]
    return submission
