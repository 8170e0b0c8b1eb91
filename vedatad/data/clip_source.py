"""Decoded, normalised clip segments of videos, produced in DataLoader worker processes.

Each item is one segment of one video: ``chunks_per_item`` whole clip chunks of
``chunk_size`` frames (the last segment may hold fewer chunks). Frames past the end of the
video are zeros after normalisation, as in the training windows (``FormatWindow``). A video
that fails to open or decode, has no usable frame rate, or decodes to too few frames
(fewer than ``min_frames``, or fewer than ``min_frames_fraction`` of what its annotated
duration promises) yields one item with ``error`` set, and its remaining segments are
skipped, so one broken file never stops the job and never ends up looking complete.
"""
import math
import os
import signal
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .transforms import CenterCrop, Normalize, Resize
from .video_dataset import find_videos
from .video_readers import open_video
from ..utils.workers import silence_orphaned_threads


class VideoCheckError(RuntimeError):
    """A video that decodes, but not into something worth storing; names the file."""


def locate_videos(root, video_ids, video_ext=None):
    """video_id -> path (``root/<id><video_ext>``, else as the video dataset finds them: a
    ``root/<id>`` frame folder or a video file), looked up once for all videos. Missing
    videos map to None and are reported per video by the extractor."""
    if video_ext:
        return {vid: Path(root) / f'{vid}{video_ext}' for vid in video_ids}
    found, _ = find_videos(root, video_ids)
    return {vid: found.get(vid) for vid in video_ids}


class ClipSegments(IterableDataset):
    """Iterate (video, segment) items for ``video_ids``, split between workers by video.

    durations: optional {video id: seconds} (the annotation's); with ``min_frames_fraction``
    a video that decodes to fewer than that fraction of duration x fps frames fails.
    paths: optional {video id: file or frame folder}, instead of looking under ``root``.
    """

    def __init__(self, video_ids, root, crop_size, resize=None, fps=None, backend='auto',
                 video_ext=None, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                 chunk_size=32, chunks_per_item=8, min_frames=1, durations=None,
                 min_frames_fraction=0.0, paths=None):
        self.video_ids = list(video_ids)
        self.root, self.backend, self.fps = root, backend, fps
        self.paths = (dict(paths) if paths is not None
                      else locate_videos(root, self.video_ids, video_ext))
        self.chunk_size, self.chunks_per_item = chunk_size, chunks_per_item
        self.min_frames = max(1, int(min_frames))
        self.durations = dict(durations or {})
        self.min_frames_fraction = float(min_frames_fraction)
        self.resize = Resize(size=resize) if resize else None
        self.crop = CenterCrop(crop_size)
        self.normalize = Normalize(mean, std)

    def _my_videos(self):
        info = get_worker_info()
        if info is None:
            return self.video_ids
        return self.video_ids[info.id::info.num_workers]

    def __iter__(self):
        for video_id in self._my_videos():
            try:
                yield from self._segments(video_id)
            except Exception as err:  # reported per video by the extractor
                yield dict(video_id=video_id, error=f'{type(err).__name__}: {err}')

    def check_reader(self, reader, video_id, path):
        """Refuse readers whose frames cannot make a complete, meaningful video."""
        fps, n = reader.fps, reader.num_frames
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise VideoCheckError(f'{path}: frame rate {fps!r} is not a positive number')
        if n < self.min_frames:
            raise VideoCheckError(f'{path}: decodes to {n} frames, fewer than '
                                  f'extract.min_frames={self.min_frames}')
        duration = self.durations.get(video_id)
        if self.min_frames_fraction > 0 and duration:
            expected = duration * fps
            if n < self.min_frames_fraction * expected:
                raise VideoCheckError(
                    f'{path}: decodes to {n} frames, but its annotated duration of '
                    f'{duration:.2f} s at {fps:.3f} fps promises {expected:.0f} (truncated or '
                    'broken file?); lower extract.min_frames_fraction to accept it')

    def _segments(self, video_id):
        path = self.paths[video_id]
        if path is None:
            raise FileNotFoundError(f'{self.root}: no frame folder or video file for {video_id}')
        reader = open_video(path, backend=self.backend, sample_fps=self.fps)
        self.check_reader(reader, video_id, path)
        frames_per_item = self.chunk_size * self.chunks_per_item
        num_items = math.ceil(reader.num_frames / frames_per_item)
        for item in range(num_items):
            start = item * frames_per_item
            stop = min(start + frames_per_item, reader.num_frames)
            frames = reader.read(np.arange(start, stop))
            if frames.shape[0] != stop - start:
                raise VideoCheckError(f'{path}: frames {start}..{stop - 1} decoded to '
                                      f'{frames.shape[0]} frames')
            clip = self._prepare(frames, video_id)
            yield dict(video_id=video_id, path=str(path), num_frames=reader.num_frames,
                       fps=reader.fps, item=item, num_items=num_items,
                       first_chunk=start // self.chunk_size, imgs=clip, error=None)

    def _prepare(self, frames, video_id):
        """uint8 (T, H, W, 3) -> float32 (3, T_pad, h, w), T_pad a multiple of chunk_size."""
        results = dict(imgs=frames, video_id=video_id)
        if self.resize is not None:
            results = self.resize(results)
        results = self.normalize(self.crop(results))
        imgs = torch.from_numpy(np.ascontiguousarray(results['imgs'], np.float32))
        imgs = imgs.permute(3, 0, 1, 2)  # 3, T, h, w
        pad = -imgs.shape[1] % self.chunk_size
        if pad:
            imgs = torch.cat([imgs, imgs.new_zeros((3, pad) + tuple(imgs.shape[2:]))], dim=1)
        return imgs


def worker_init_threads(_worker_id):
    """Decode workers use one thread each (the backbone owns the other cores) and leave
    Ctrl-C to the main process, which stops them and reports in one line."""
    torch.set_num_threads(1)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    silence_orphaned_threads()
