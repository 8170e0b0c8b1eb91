"""A small synthetic feature dataset for demos and tests: actions are class patterns in noise.

Each video is a (T, C) array of Gaussian noise. Each action adds its class's fixed random
pattern over a run of steps, so a detector can learn both the class and the boundaries.
Annotations follow the ActivityNet JSON layout used by the real datasets, in seconds,
with the same step <-> seconds convention as the feature datasets
(step ``i`` is centred on frame ``i * feat_stride + feat_num_frames / 2``).
Everything is drawn from one seeded generator: the same arguments give the same files.
"""
import io
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from ..utils.io import atomic_write_bytes, atomic_write_json

FORMAT_VERSION = 'synthetic-features-1'


@dataclass(frozen=True)
class SyntheticFeatureSpec:
    num_train: int = 48
    num_val: int = 16
    num_classes: int = 4
    feat_dim: int = 32
    min_steps: int = 96
    max_steps: int = 192
    min_action: int = 8
    max_action: int = 40
    max_actions: int = 3
    signal: float = 1.5     # pattern amplitude per channel
    noise: float = 1.0      # noise standard deviation
    feat_stride: int = 4
    num_frames: int = 16
    fps: float = 30.0
    seed: int = 0


def step_to_seconds(step, spec):
    return (step * spec.feat_stride + 0.5 * spec.num_frames) / spec.fps


def _place_actions(rng, num_steps, spec):
    """Non-overlapping [start, end) step runs, in order, with a class each."""
    actions, cursor = [], int(rng.integers(2, 12))
    for _ in range(int(rng.integers(1, spec.max_actions + 1))):
        length = int(rng.integers(spec.min_action, spec.max_action + 1))
        if cursor + length + 2 > num_steps:
            break
        actions.append((cursor, cursor + length, int(rng.integers(spec.num_classes))))
        cursor += length + int(rng.integers(4, 24))
    return actions


def _video(rng, patterns, spec):
    num_steps = int(rng.integers(spec.min_steps, spec.max_steps + 1))
    feats = rng.normal(0.0, spec.noise, size=(num_steps, spec.feat_dim))  # T, C
    actions = _place_actions(rng, num_steps, spec)
    for start, end, label in actions:
        feats[start:end] += spec.signal * patterns[label]
    return feats.astype(np.float32), actions


def _annotation(num_steps, actions, subset, spec):
    last_frame = (num_steps - 1) * spec.feat_stride + spec.num_frames
    segments = [{
        # the run covers steps start..end-1: its edges lie half a step outside them
        'segment': [round(step_to_seconds(start - 0.5, spec), 4),
                    round(step_to_seconds(end - 0.5, spec), 4)],
        'label': f'action_{label}',
        'label_id': label,
    } for start, end, label in actions]
    return {'subset': subset, 'duration': round(last_frame / spec.fps, 4), 'fps': spec.fps,
            'annotations': segments}


def _save_npy(path, array):
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def generate_synthetic_features(out_dir, spec=SyntheticFeatureSpec(), overwrite=False):
    """Write ``out_dir/features/*.npy`` and ``out_dir/annotations.json``; return the JSON path.

    The JSON is written last and records the spec, so an existing complete dataset with the
    same spec is reused as is.
    """
    ann_path = os.path.join(out_dir, 'annotations.json')
    if not overwrite and _is_complete(ann_path, spec):
        return ann_path
    rng = np.random.default_rng(spec.seed)
    patterns = rng.choice([-1.0, 1.0], size=(spec.num_classes, spec.feat_dim))  # K, C
    database = {}
    subsets = ['training'] * spec.num_train + ['validation'] * spec.num_val
    for index, subset in enumerate(subsets):
        video_id = f'synth_{subset[:5]}_{index:04d}'
        feats, actions = _video(rng, patterns, spec)
        _save_npy(os.path.join(out_dir, 'features', video_id + '.npy'), feats)
        database[video_id] = _annotation(len(feats), actions, subset, spec)
    # what a generic feature dataset needs to know about the files (stride, clip, rate, size)
    atomic_write_json(os.path.join(out_dir, 'features', 'features_info.json'), dict(
        feat_dim=spec.feat_dim, feat_stride=spec.feat_stride, feat_num_frames=spec.num_frames,
        fps=spec.fps, backbone='synthetic'), indent=2)
    atomic_write_json(ann_path, {'version': FORMAT_VERSION, 'synthetic_spec': asdict(spec),
                                 'database': database}, indent=1)
    return ann_path


def _is_complete(ann_path, spec):
    if not os.path.isfile(ann_path):
        return False
    with open(ann_path) as f:
        content = json.load(f)
    if content.get('synthetic_spec') != asdict(spec):
        return False
    folder = os.path.join(os.path.dirname(ann_path), 'features')
    return os.path.isfile(os.path.join(folder, 'features_info.json')) and all(
        os.path.isfile(os.path.join(folder, vid + '.npy')) for vid in content['database'])
