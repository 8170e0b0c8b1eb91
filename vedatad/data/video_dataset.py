"""Video dataset for end-to-end training: frame windows + targets from ActivityNet JSON.

Units (the one place they are defined for the video pipeline):

* ``fps`` of an item is the frame rate of the dataset's frame index space: the rate of the
  extracted frames (``meta.json``), the video's average rate, or ``sample_fps`` if given.
* Frame coordinates are continuous: position ``x`` is time ``x / fps`` seconds from the
  video start, frame ``i`` spans ``[i, i + 1)``. Seconds -> frames is ``t * fps``.
* Window-relative coordinates subtract ``frame_offset`` (the window's first frame, always a
  multiple of ``chunk_size`` = 32, so memory-bank reads/writes cover whole chunks).
  A detection at window position ``x`` is at ``(frame_offset + x) / fps`` seconds.

Bank-backed train item (``pipeline_cfg.keep_ratio`` set: the TALLFormer training path; the
data cost follows the fresh chunks, not the window)::

    fresh_imgs   uint8 (k, 3, 32, H, Wd)  pixels of the fresh chunks only (the model
                                          normalises them on its device)
    fresh_chunks int64 (k,)               their window-relative chunk indices
    bank_feats   float16 (n, 16, C)       stale chunks' features from the memory bank
                                          (zeros at fresh chunks and past the video end)
    bank_steps   int64 (n,)               training step that last wrote each stale chunk
    pixel_mean / pixel_std float32 (3,)
    masks, frame_offset, gt_segments, gt_labels, video_id, ... as below

Whole-window train item (no ``keep_ratio``: every frame decoded)::

    imgs         float32 (3, W, H, Wd)  normalised pixels, zeros on padded frames
    masks        bool (W,)              True on real frames (short videos are padded)
    frame_offset int                    first frame of the window, multiple of 32
    gt_segments  float32 (N, 2)         [start, end) in frames relative to the window start,
                                        clipped to [0, number of real frames]
    gt_labels    int64 (N,)             class index (``dataset.label_map``)
    video_id, fps, duration (s, from the annotation), num_frames, window_size

Test item (one per video, every sliding window)::

    imgs          float32 (N_win, 3, W, H, Wd)   (a strided view of one padded video copy)
    masks         bool (N_win, W)
    frame_offsets int64 (N_win,)                 each window's first frame
    video_id, fps, duration, num_frames, window_size

With ``lazy_windows=True`` a test item holds ``windows`` (a ``VideoWindows``: ``len()``,
``load(indices)`` -> float32 (k, 3, W, H, Wd)) instead of ``imgs``, for videos too long to
hold every window in memory (THUMOS test videos reach tens of thousands of frames).

Random choices (window, fresh chunks, crop, flip, colours) come from one generator per item.
Once the engine calls ``set_epoch_seed`` it is seeded by (epoch seed, index): the epoch
seed derives from (seed, epoch, rank), so a resumed run and any number of DataLoader workers
draw exactly the same windows and chunks.

``collate_video_windows`` turns a list of items into one batch of windows (see there).
"""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from vedatad.registry import COLLATE_FUNCTIONS, DATASETS

from ..utils.config_keys import check_keys
from .annotations import build_label_map, load_annotations
from .bank_windows import BankWindowReader
from .transforms import Compose, SelectFreshChunks
from .video_readers import VideoReadError, open_video

VIDEO_EXTS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v', '.mpg', '.mpeg')
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def default_video_pipeline(mode, window_size, chunk_size=32, short_side=128, crop_size=112,
                           overlap=0.25, min_coverage=0.75, photometric=True,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, keep_ratio=None,
                           chunk_sampling='random'):
    """The standard train / test pipeline as a list of transform configs.

    Train mode with ``keep_ratio`` (TALLFormer): a window on the chunk grid, its fresh chunks
    chosen (``chunk_sampling``), only their frames decoded and augmented, uint8 out, the
    model normalises on its device; the stale chunks' features are read from the bank by
    the dataset. Without ``keep_ratio``: the whole window, normalised float32.
    """
    if mode == 'train':
        temporal = [dict(type='TemporalRandomCrop', window_size=window_size,
                         chunk_size=chunk_size, min_coverage=min_coverage)]
        fresh = keep_ratio is not None
        if fresh:
            temporal.append(dict(type='SelectFreshChunks', keep_ratio=keep_ratio,
                                 sampling=chunk_sampling, chunk_size=chunk_size))
        spatial = [dict(type='RandomCrop', size=crop_size), dict(type='RandomFlip', p=0.5)]
        spatial += ([dict(type='PhotoMetricDistortion',
                          out_dtype='uint8' if fresh else 'float32')] if photometric else [])
        normalize = [dict(type='Normalize', mean=mean, std=std, on_device=fresh)]
        final = [dict(type='FormatFreshChunks' if fresh else 'FormatWindow')]
    else:
        if keep_ratio is not None:
            raise ValueError('pipeline_cfg.keep_ratio is a training option (test windows '
                             'decode every chunk)')
        temporal = [dict(type='SlidingWindows', window_size=window_size, overlap=overlap,
                         chunk_size=chunk_size)]
        spatial = [dict(type='CenterCrop', size=crop_size)]
        normalize = [dict(type='Normalize', mean=mean, std=std)]
        final = [dict(type='FormatWindows')]
    return (temporal + [dict(type='DecodeFrames'), dict(type='Resize', short_side=short_side)]
            + spatial + normalize + final)


PIPELINE_CFG_KEYS = ('short_side', 'crop_size', 'overlap', 'min_coverage', 'photometric',
                     'mean', 'std', 'keep_ratio', 'chunk_sampling')


def find_videos(data_prefix, video_ids):
    """video_id -> frame folder ``data_prefix/<id>`` or file ``data_prefix/<id>.<ext>``."""
    if not os.path.isdir(data_prefix):
        raise FileNotFoundError(f'{data_prefix}: video folder not found (frame folders or '
                                'video files named by video id)')
    by_stem = {}
    for entry in os.scandir(data_prefix):
        stem, ext = os.path.splitext(entry.name)
        if entry.is_dir():
            by_stem[entry.name] = entry.path
        elif ext.lower() in VIDEO_EXTS:
            by_stem.setdefault(stem, entry.path)
    found = {vid: by_stem[vid] for vid in video_ids if vid in by_stem}
    missing = [vid for vid in video_ids if vid not in by_stem]
    return found, missing


@DATASETS.register_module()
class VideoDataset(Dataset):
    """Videos (files or frame folders under ``data_prefix``) with ActivityNet annotations.

    Args:
        ann_file: ActivityNet-style JSON.
        data_prefix: folder holding ``<video_id>/`` frame folders or ``<video_id>.<ext>``.
        subset: annotation subset to use ('training', 'validation', ...); None = all.
        mode: 'train' (one random window per item) or 'test' (all windows of a video).
        pipeline: transform configs; None builds ``default_video_pipeline`` from
            window_size / chunk_size / pipeline_cfg.
        class_names: label order; default ``build_label_map`` over the whole file.
        backend / fps / sample_fps: passed to ``open_video``.
        skip_empty: in train mode drop videos without segments.
        missing: 'error' (default) or 'skip' videos that are not under data_prefix.
        lazy_windows: test mode only; items hold a ``VideoWindows`` under 'windows' instead
            of 'imgs', decoding windows on demand (bounded memory for long videos).
    """

    def __init__(self, ann_file, data_prefix, subset=None, mode='train', pipeline=None,
                 window_size=None, chunk_size=32, pipeline_cfg=None, class_names=None,
                 backend='auto', fps=None, sample_fps=None, skip_empty=True, missing='error',
                 lazy_windows=False):
        if mode not in ('train', 'test'):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        self.ann_file, self.data_prefix, self.mode = str(ann_file), str(data_prefix), mode
        self.backend, self.fps, self.sample_fps = backend, fps, sample_fps
        all_videos = load_annotations(ann_file)
        self.label_map = ({name: i for i, name in enumerate(class_names)} if class_names
                          else build_label_map(all_videos.values()))
        self.class_names = sorted(self.label_map, key=self.label_map.get)
        videos = [v for v in all_videos.values()
                  if subset is None or v.subset.lower() == subset.lower()]
        if mode == 'train' and skip_empty:
            videos = [v for v in videos if v.segments]
        self._check_labels(videos)
        paths, absent = find_videos(self.data_prefix, [v.video_id for v in videos])
        if absent and missing == 'error':
            raise FileNotFoundError(
                f'{self.data_prefix}: {len(absent)} video(s) of {self.ann_file} not found '
                f'(e.g. {absent[:3]}); expected <video_id>/ frame folders or '
                f'<video_id>{{{",".join(VIDEO_EXTS)}}} files')
        self.videos = [v for v in videos if v.video_id in paths]
        self.paths = paths
        if pipeline is None:
            if window_size is None:
                raise ValueError('VideoDataset needs window_size when no pipeline is given')
            check_keys('pipeline_cfg', pipeline_cfg or {}, PIPELINE_CFG_KEYS, self.ann_file)
            pipeline = default_video_pipeline(mode, window_size, chunk_size,
                                              **(pipeline_cfg or {}))
        self.pipeline = Compose(pipeline)
        self.bank_reader = None
        self.epoch_seed = None
        self.lazy_windows = bool(lazy_windows)
        if self.lazy_windows:
            self._split_lazy_pipeline(pipeline)

    def _split_lazy_pipeline(self, pipeline):
        """Temporal part (up to DecodeFrames) per item; the rest per window, on demand."""
        if self.mode != 'test':
            raise ValueError('lazy_windows is a test-mode option')
        types = [t['type'] if isinstance(t, dict) else type(t).__name__ for t in pipeline]
        if 'DecodeFrames' not in types or types[-1] != 'FormatWindows':
            raise ValueError('lazy_windows needs a pipeline with DecodeFrames and ending in '
                             f'FormatWindows, got {types}')
        cut = types.index('DecodeFrames')
        self._temporal = Compose(pipeline[:cut])
        self._per_window = list(pipeline[cut:-1]) + [dict(type='FormatWindow')]

    def _lazy_item(self, index):
        results = self._temporal(self._results(index))
        offsets = torch.as_tensor(results['frame_offsets'], dtype=torch.long)
        window = int(results['window_size'])
        masks = torch.arange(window)[None] + offsets[:, None] < results['num_frames']
        video = self.videos[index]
        windows = VideoWindows(self.paths[video.video_id], offsets.tolist(), window,
                               self._per_window, dict(backend=self.backend, fps=self.fps,
                                                      sample_fps=self.sample_fps))
        return dict(windows=windows, masks=masks, frame_offsets=offsets,
                    **{k: results[k] for k in META_KEYS})

    # ---------------------------------------------------------------- bank-backed windows
    @property
    def needs_bank(self):
        """True when train items read their stale chunks from a memory bank."""
        return any(isinstance(t, SelectFreshChunks) for t in self.pipeline.transforms)

    def attach_bank(self, bank):
        """The working memory bank the stale chunks are read from (in the loader workers:
        the bank pickles by path and reopens itself there)."""
        self.bank_reader = BankWindowReader(bank)

    def set_epoch_seed(self, seed):
        """Seed item ``i``'s random choices with (seed, i) from now on (see module doc)."""
        self.epoch_seed = int(seed)

    def _read_bank(self, results):
        if self.bank_reader is None:
            raise RuntimeError(
                f'{self.ann_file}: bank-backed training windows (pipeline_cfg.keep_ratio) read '
                'their stale chunks from the working memory bank, and none is attached; '
                'tools/trainval.py attaches it (model.membank), else call attach_bank(bank)')
        cs = int(results['chunk_size'])
        feats, steps = self.bank_reader.read(
            results['video_id'], results['num_frames'], int(results['frame_offset']) // cs,
            int(results['num_window_chunks']), np.asarray(results['fresh_chunks']),
            fps=results['fps'])
        results.update(bank_feats=torch.from_numpy(feats), bank_steps=torch.from_numpy(steps))
        return results

    def _check_labels(self, videos):
        unknown = {s.label for v in videos for s in v.segments} - set(self.label_map)
        if unknown:
            raise KeyError(f'{self.ann_file}: labels {sorted(unknown)} are not in class_names')

    def __len__(self):
        return len(self.videos)

    def open(self, index):
        video = self.videos[index]
        path = self.paths[video.video_id]
        try:
            return open_video(path, self.backend, fps=self.fps, sample_fps=self.sample_fps)
        except VideoReadError as err:
            raise VideoReadError(f'video {video.video_id!r}: {err}') from err

    def _results(self, index):
        video = self.videos[index]
        reader = self.open(index)
        segments = np.array([[s.start, s.end] for s in video.segments], np.float32).reshape(-1, 2)
        labels = np.array([self.label_map[s.label] for s in video.segments], np.int64)
        if self.epoch_seed is not None:
            rng = np.random.default_rng([self.epoch_seed, index])
        else:  # follows torch seeding per worker
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return dict(video_id=video.video_id, reader=reader, num_frames=reader.num_frames,
                    fps=float(reader.fps), duration=float(video.duration),
                    gt_segments=segments * reader.fps, gt_labels=labels, rng=rng)

    def __getitem__(self, index):
        if self.lazy_windows:
            return self._lazy_item(index)
        results = self.pipeline(self._results(index))
        keep = ['masks', 'video_id', 'fps', 'duration', 'num_frames', 'window_size']
        if 'fresh_chunks' in results:
            results = self._read_bank(results)
            keep += ['fresh_imgs', 'fresh_chunks', 'bank_feats', 'bank_steps', 'pixel_mean',
                     'pixel_std']
        else:
            keep += ['imgs']
        if self.mode == 'train':
            keep += ['frame_offset', 'gt_segments', 'gt_labels']
        else:
            keep += ['frame_offsets']
        return {k: results[k] for k in keep}


META_KEYS = ('video_id', 'fps', 'duration', 'num_frames', 'window_size')


class VideoWindows:
    """The sliding windows of one video, decoded on demand (picklable; opens the video on
    first use). ``len(w)``; ``w.load([i, j])`` -> float32 (k, 3, W, H, Wd) with the same
    transforms as the eager test pipeline."""

    def __init__(self, path, frame_offsets, window_size, transforms, open_kwargs):
        self.path, self.frame_offsets = str(path), list(frame_offsets)
        self.window_size = window_size
        self.transforms, self.open_kwargs = transforms, open_kwargs
        self._reader = self._pipeline = None

    def __len__(self):
        return len(self.frame_offsets)

    def load(self, indices):
        if self._reader is None:
            self._reader = open_video(self.path, **self.open_kwargs)
            self._pipeline = Compose(self.transforms)
        out = []
        for i in indices:
            start = self.frame_offsets[i]
            end = min(start + self.window_size, self._reader.num_frames)
            results = dict(reader=self._reader, frame_inds=np.arange(start, end),
                           window_size=self.window_size, video_id=self.path)
            out.append(self._pipeline(results)['imgs'])
        return torch.stack(out)

    def __getstate__(self):  # readers hold native handles: reopen after pickling
        return dict(self.__dict__, _reader=None, _pipeline=None)


@COLLATE_FUNCTIONS.register_module()
def collate_video_windows(items):
    """Batch train or test items into one batch of windows.

    Returns a dict:
        imgs          float32 (N, 3, W, H, Wd)   every window of the batch
        masks         bool (N, W)
        frame_offsets int64 (N,)                 first frame of each window
        video_index   int64 (N,)                 which entry of ``metas`` a window belongs to
        metas         list of B dicts: video_id, fps, duration, num_frames, window_size
        gt_segments   list of N float32 (n_i, 2) window-relative frames   (train items only)
        gt_labels     list of N int64 (n_i,)                               (train items only)
    A train batch has N = B (one window per video); a test batch has every window of its
    videos, in video order then time order. Lazy test items give ``windows`` (list of B
    ``VideoWindows``; window j of video b is ``windows[b].load([j])``) instead of ``imgs``.

    Bank-backed train items give, instead of ``imgs`` (n chunks per window, K fresh chunks
    in the batch, in video order then chunk order):
        fresh_imgs    uint8 (K, 3, chunk_size, H, Wd)
        fresh_index   int64 (K,)                 b * n + chunk: where each goes in the batch
        fresh_chunks  list of B int64 (k_b,)     window-relative fresh chunks per video
        bank_feats    float16 (B, n, rows_per_chunk, C)   stale chunks (zeros elsewhere)
        bank_steps    int64 (B, n)
        pixel_mean, pixel_std   float32 (3,)
    """
    if items and 'fresh_imgs' in items[0]:
        return _collate_fresh(items)
    imgs, masks, offsets, owner = [], [], [], []
    for b, item in enumerate(items):
        if 'windows' in item:  # lazy test item: no pixels yet
            masks.append(item['masks'])
            offsets.append(torch.as_tensor(item['frame_offsets'], dtype=torch.long))
        elif item['imgs'].dim() == 4:  # train: one window
            imgs.append(item['imgs'][None])
            masks.append(item['masks'][None])
            offsets.append(torch.tensor([item['frame_offset']], dtype=torch.long))
        else:
            imgs.append(item['imgs'])
            masks.append(item['masks'])
            offsets.append(torch.as_tensor(item['frame_offsets'], dtype=torch.long))
        owner.append(torch.full((len(offsets[-1]),), b, dtype=torch.long))
    batch = dict(masks=torch.cat(masks), frame_offsets=torch.cat(offsets),
                 video_index=torch.cat(owner),
                 metas=[{k: item[k] for k in META_KEYS} for item in items])
    if imgs:  # a single test video keeps its strided view: no copy of overlapping windows
        batch['imgs'] = torch.cat(imgs) if len(imgs) > 1 else imgs[0]
    else:
        batch['windows'] = [item['windows'] for item in items]
    _collate_targets(batch, items)
    return batch


def _collate_targets(batch, items):
    if all('gt_segments' in item for item in items):
        batch['gt_segments'] = [item['gt_segments'] for item in items]
        batch['gt_labels'] = [item['gt_labels'] for item in items]


def _collate_fresh(items):
    n = {int(item['bank_feats'].shape[0]) for item in items}
    if len(n) != 1 or any('fresh_imgs' not in item for item in items):
        raise ValueError('collate_video_windows: a batch mixes windows of different sizes or '
                         'bank-backed and whole-window items')
    n = n.pop()
    for key in ('pixel_mean', 'pixel_std'):
        if any(not np.array_equal(item[key], items[0][key]) for item in items):
            raise ValueError(f'collate_video_windows: items disagree on {key}')
    batch = dict(
        fresh_imgs=torch.cat([item['fresh_imgs'] for item in items]),
        fresh_index=torch.cat([b * n + item['fresh_chunks'] for b, item in enumerate(items)]),
        fresh_chunks=[item['fresh_chunks'] for item in items],
        bank_feats=torch.stack([item['bank_feats'] for item in items]),
        bank_steps=torch.stack([item['bank_steps'] for item in items]),
        pixel_mean=torch.as_tensor(np.asarray(items[0]['pixel_mean'], np.float32)),
        pixel_std=torch.as_tensor(np.asarray(items[0]['pixel_std'], np.float32)),
        masks=torch.stack([item['masks'] for item in items]),
        frame_offsets=torch.tensor([int(item['frame_offset']) for item in items]),
        video_index=torch.arange(len(items)),
        metas=[{k: item[k] for k in META_KEYS} for item in items])
    _collate_targets(batch, items)
    return batch


def seconds_to_frames(t, fps):
    return np.asarray(t, np.float64) * fps


def window_frames_to_seconds(x, frame_offset, fps):
    """Window-relative frame positions -> seconds from the video start."""
    return (np.asarray(x, np.float64) + frame_offset) / fps


__all__ = ['PIPELINE_CFG_KEYS', 'VideoDataset', 'VideoWindows', 'collate_video_windows',
           'default_video_pipeline', 'find_videos', 'seconds_to_frames',
           'window_frames_to_seconds']
