"""Synthetic action videos: real mp4 files + ActivityNet-style annotations, in seconds.

Each video shows a slowly scrolling, muted random texture. During each action segment an
object of the action's class is drawn on top; classes differ in colour, shape and motion
at once (class 0: red square sweeping left to right, class 1: green disc moving top to
bottom, class 2: blue diamond circling, ...), so a small video model separates them
quickly. Segments lie on frame boundaries: frames ``round(t0 * fps) .. round(t1 * fps) - 1``
show the object. Everything is drawn with whole-array numpy operations and encoded by
piping raw RGB frames into ffmpeg (libx264 when the binary has it, else mpeg4).

Output layout::

    OUT_DIR/videos/<video_id>.mp4
    OUT_DIR/annotations.json   {"version", "taxonomy", "database": {id: {"subset",
                                "duration", "fps", "num_frames", "annotations": [{"segment",
                                "label", "label_id"}]}}}

Deterministic per seed: video i is drawn from ``np.random.default_rng([seed, i])``.
"""
import functools
import os
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from vedatad.utils.io import atomic_write_json

from .ffmpeg import FFmpegError, find_ffmpeg, video_encoder

COLOURS = [('red', (230, 30, 30)), ('green', (30, 210, 40)), ('blue', (40, 70, 240)),
           ('yellow', (240, 230, 30)), ('magenta', (230, 40, 220)), ('cyan', (30, 220, 230)),
           ('orange', (250, 140, 20)), ('white', (250, 250, 250))]
SHAPES = ['square', 'disc', 'diamond', 'ring']
MOTIONS = ['sweep_right', 'sweep_down', 'circle', 'pulse', 'sweep_diagonal']


def class_style(k):
    """(label name, colour RGB, shape, motion) of class k; all three vary with k."""
    name, colour = COLOURS[k % len(COLOURS)]
    shape, motion = SHAPES[k % len(SHAPES)], MOTIONS[k % len(MOTIONS)]
    return f'{name}_{shape}_{motion}', colour, shape, motion


def sample_segments(rng, num_frames, fps, first_label, num_classes):
    """Non-overlapping (f0, f1, label) frame segments, 1-3 per 20 s, 2-5 s long."""
    max_actions = max(1, int(num_frames / fps // 7))
    count = int(rng.integers(1, max_actions + 1))
    lengths = np.round(rng.uniform(2.0, 5.0, count) * fps).astype(int)
    lengths = np.minimum(lengths, max(1, num_frames // (count + 1)))
    spare = num_frames - lengths.sum()
    gaps = np.diff(np.sort(rng.integers(0, spare + 1, count + 1)), prepend=0)  # count + 1
    labels = [first_label] + list(rng.integers(0, num_classes, count - 1))
    segments, t = [], 0
    for i in range(count):
        t += int(gaps[i])
        segments.append((t, t + int(lengths[i]), int(labels[i])))
        t += int(lengths[i])
    return segments


def _texture(rng, size):
    """A muted random texture twice the frame size (tiles seamlessly when scrolled)."""
    cells = rng.uniform(60, 150, (size // 8, size // 8, 3)).astype(np.float32)
    tile = np.kron(cells, np.ones((16, 16, 1), np.float32))  # 2 * size, 2 * size, 3
    stripes = 12 * np.sin(np.arange(2 * size) * (2 * np.pi / rng.uniform(6, 20)))
    return tile + stripes[None, :, None].astype(np.float32)


def _background(rng, num_frames, size):
    tex = _texture(rng, size)
    velocity = rng.uniform(-1.5, 1.5, 2)
    t = np.arange(num_frames)[:, None, None]
    ys = (np.arange(size)[None, :, None] + np.round(velocity[0] * t)).astype(int) % (2 * size)
    xs = (np.arange(size)[None, None, :] + np.round(velocity[1] * t)).astype(int) % (2 * size)
    return tex[ys, xs]  # T, H, W, 3


def _centres(motion, phase, size, radius):
    """Object centre (cy, cx) for each phase in [0, 1)."""
    lo, hi = radius, size - radius
    mid = np.full_like(phase, size / 2)
    if motion == 'sweep_right':
        return mid, lo + (hi - lo) * phase
    if motion == 'sweep_down':
        return lo + (hi - lo) * phase, mid
    if motion == 'sweep_diagonal':
        return lo + (hi - lo) * phase, hi - (hi - lo) * phase
    if motion == 'circle':
        angle = 2 * np.pi * 1.5 * phase
        orbit = size / 2 - radius
        return mid + orbit * np.sin(angle), mid + orbit * np.cos(angle)
    return mid, mid  # pulse: fixed centre, the size changes


def _shape_mask(shape, dy, dx, r):
    """Boolean mask of the shape from offsets to its centre (broadcast arrays)."""
    if shape == 'square':
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if shape == 'disc':
        return dy ** 2 + dx ** 2 <= r ** 2
    if shape == 'diamond':
        return np.abs(dy) + np.abs(dx) <= 1.3 * r
    dist = np.sqrt(dy ** 2 + dx ** 2)
    return (dist <= r) & (dist >= 0.55 * r)  # ring


def draw_action(frames, f0, f1, label, size):
    """Draw class ``label``'s object on frames[f0:f1] in place."""
    _, colour, shape, motion = class_style(label)
    n = f1 - f0
    phase = np.arange(n) / max(n, 1)
    radius = size / 4.5  # large enough to dominate a 64-pixel frame: learnable from scratch
    cy, cx = _centres(motion, phase, size, radius)
    r = radius * (1 + 0.35 * np.sin(2 * np.pi * 3 * phase)) if motion == 'pulse' else \
        np.full(n, radius)
    grid = np.arange(size, dtype=np.float32)
    dy = grid[None, :, None] - cy[:, None, None]  # n, H, 1
    dx = grid[None, None, :] - cx[:, None, None]  # n, 1, W
    mask = _shape_mask(shape, dy, dx, r[:, None, None])  # n, H, W
    frames[f0:f1][mask] = np.asarray(colour, np.float32)


def render_video(index, seed, seconds, size, num_classes, fps):
    """(frames uint8 (T, H, W, 3), segments [(f0, f1, label)]) of synthetic video ``index``."""
    rng = np.random.default_rng([seed, index])
    num_frames = int(round(seconds * fps))
    frames = _background(rng, num_frames, size)
    segments = sample_segments(rng, num_frames, fps, index % num_classes, num_classes)
    for f0, f1, label in segments:
        draw_action(frames, f0, f1, label, size)
    return np.clip(frames, 0, 255).astype(np.uint8), segments


def encode_video(frames, path, fps, ffmpeg=None, gop=16):
    """Write uint8 (T, H, W, 3) frames to ``path`` (mp4) atomically via an ffmpeg pipe."""
    exe = ffmpeg or find_ffmpeg()
    t, h, w, _ = frames.shape
    codec = video_encoder(exe)
    quality = (['-preset', 'ultrafast', '-crf', '18'] if codec == 'libx264' else ['-q:v', '3'])
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix='.mp4', dir=path.parent)
    os.close(fd)
    cmd = [exe, '-y', '-hide_banner', '-loglevel', 'error', '-f', 'rawvideo',
           '-pix_fmt', 'rgb24', '-s', f'{w}x{h}', '-r', str(fps), '-i', '-',
           '-c:v', codec, *quality, '-g', str(gop), '-pix_fmt', 'yuv420p', '-threads', '1',
           '-an', tmp]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(),
                          capture_output=True)
    if proc.returncode != 0:
        os.unlink(tmp)
        raise FFmpegError(f'{path}: encoding failed: {proc.stderr.decode(errors="replace")}')
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
    os.replace(tmp, path)


def _make_one(index, out_dir, seed, seconds, size, num_classes, fps, ffmpeg):
    frames, segments = render_video(index, seed, seconds, size, num_classes, fps)
    video_id = f'synthetic_{index:04d}'
    encode_video(frames, Path(out_dir) / 'videos' / f'{video_id}.mp4', fps, ffmpeg)
    return video_id, len(frames), segments


def make_synthetic_videos(out_dir, num_videos=24, seconds=20, size=128, num_classes=3,
                          seed=0, fps=15, train_fraction=2 / 3, workers=1,
                          progress=False) -> dict:
    """Write the videos and ``annotations.json`` under ``out_dir``; return the JSON dict.

    The first ``round(num_videos * train_fraction)`` videos are 'training', the rest
    'validation'.
    """
    if size % 8 or size < 32:
        raise ValueError(f'size must be a multiple of 8 and >= 32, got {size}')
    out_dir = Path(out_dir)
    (out_dir / 'videos').mkdir(parents=True, exist_ok=True)
    make = functools.partial(_make_one, out_dir=out_dir, seed=seed, seconds=seconds,
                             size=size, num_classes=num_classes, fps=fps, ffmpeg=find_ffmpeg())
    indices = range(num_videos)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            made = list(_progress(pool.map(make, indices), num_videos, progress))
    else:
        made = list(_progress(map(make, indices), num_videos, progress))
    num_train = int(round(num_videos * train_fraction))
    database = {}
    for i, (video_id, num_frames, segments) in enumerate(made):
        database[video_id] = dict(
            subset='training' if i < num_train else 'validation',
            duration=num_frames / fps, fps=float(fps), num_frames=num_frames,
            annotations=[dict(segment=[f0 / fps, f1 / fps], label=class_style(k)[0],
                              label_id=k) for f0, f1, k in segments])
    data = dict(version='vedatad-synthetic-1',
                taxonomy=[dict(label_id=k, label=class_style(k)[0]) for k in range(num_classes)],
                database=database)
    atomic_write_json(out_dir / 'annotations.json', data, indent=1)
    return data


def _progress(iterable, total, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc='synthetic videos', unit='video')
