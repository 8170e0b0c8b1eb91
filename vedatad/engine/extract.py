"""Fill a memory bank with backbone features of every video (``tools/data/extract_features.py``).

Decoding runs in DataLoader worker processes (``ClipSegments``) while the backbone runs in
the main process, in eval mode, chunk by chunk (``forward_chunks``: 32-frame chunks are
independent, as during training). Each segment's features go to the bank as whole chunks
right away; a video is marked complete after its last segment, so an interrupted job
resumes by skipping complete videos and redoing the others. Under ``torchrun`` each rank
takes every WORLD_SIZE-th video; failures are gathered and reported by name.

Never mixes incompatible features: the bank records the settings that determine them
(backbone and weights hash, seed of random weights, fps, resize, crop, mean/std, chunk
size) and refuses a job with other settings, listing every difference. Random weights are
drawn from a fixed seed (``extract.init_seed``). One job writes a bank at a time
(``BANK/.lock`` names it; the ranks of one job share it). Ctrl-C stops the job with one line
saying what is complete; the same command resumes.
"""
import hashlib
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.annotations import load_annotations
from ..data.clip_source import ClipSegments, worker_init_threads
from ..membank import BankError, BankLock, MemoryBank, backbone_signature
from ..membank.lock import check_shared, new_job_id
from ..membank.settings import DEFAULT_MEAN, DEFAULT_STD, weights_name
from ..registry import MODELS
from ..utils.config_keys import ConfigKeyError, check_keys, merge_section
from ..utils.io import atomic_write_bytes, atomic_write_json

REQUIRED = object()
TOP_LEVEL_KEYS = ('data', 'backbone', 'bank', 'extract', 'cpu_threads')
DATA_DEFAULTS = dict(root=REQUIRED, ann_file=REQUIRED, subset=None, backend='auto',
                     video_ext=None, fps=None, resize=None, crop_size=REQUIRED,
                     mean=DEFAULT_MEAN, std=DEFAULT_STD)
BANK_DEFAULTS = dict(path=REQUIRED, dtype='float16')
EXTRACT_DEFAULTS = dict(
    chunk_size=32, chunks_per_item=8, num_workers=2, prefetch_factor=2, device='auto',
    amp=False, max_batch=None,
    # seed of the weights the config does not load (pretrained=None): train_cfg.seed's
    # default, so a random-weight backbone here is exactly the one training starts from
    init_seed=1234567891,
    min_frames=None,           # a video with fewer frames fails (None: one feature row)
    min_frames_fraction=0.8)   # ... or with fewer than this x annotated duration x fps


class ExtractionInterrupted(KeyboardInterrupt):
    """Ctrl-C during extraction; the message says what is complete and how to resume."""


@dataclass
class ExtractionSummary:
    done: list = field(default_factory=list)       # videos completed by this run
    skipped: list = field(default_factory=list)    # already complete before this run
    failed: dict = field(default_factory=dict)     # video id -> error message
    frames: int = 0                                 # frames through the backbone
    seconds: float = 0.0                            # wall time of the extraction loop
    backbone_seconds: float = 0.0                   # of which in the backbone

    @property
    def frames_per_second(self):
        return self.frames / self.seconds if self.seconds else 0.0


# ----- distributed helpers ---------------------------------------------------------------
def dist_info():
    """(rank, world_size, local_rank), initialising gloo from torchrun's env if needed."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group('gloo')
    if world > 1:
        return (torch.distributed.get_rank(), world, int(os.environ.get('LOCAL_RANK', '0')))
    return 0, 1, 0


def _barrier(world):
    if world > 1:
        torch.distributed.barrier()


def _gather(obj, world):
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _broadcast(obj, world):
    if world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


# ----- configuration ---------------------------------------------------------------------
def _section(cfg, name, defaults):
    given = cfg.get(name) or {}
    given = given.to_dict() if hasattr(given, 'to_dict') else dict(given)
    merged = merge_section(name, defaults, given)
    missing = [k for k, v in merged.items() if v is REQUIRED]
    if missing:
        raise ConfigKeyError('missing config key(s) ' +
                             ', '.join(f"'{name}.{k}'" for k in missing))
    return merged


def read_config(cfg):
    """(data, backbone, bank, extract) sections, checked: unknown keys are errors with a
    suggestion, required ones must be there, data.fps must be usable."""
    check_keys('extraction config', [k for k in cfg.keys() if not str(k).startswith('_')],
               TOP_LEVEL_KEYS)
    data = _section(cfg, 'data', DATA_DEFAULTS)
    bank = _section(cfg, 'bank', BANK_DEFAULTS)
    ext = _section(cfg, 'extract', EXTRACT_DEFAULTS)
    backbone = cfg.get('backbone')
    if not backbone or 'type' not in backbone:
        raise ConfigKeyError("missing config key 'backbone' (a model dict with 'type')")
    backbone = backbone.to_dict() if hasattr(backbone, 'to_dict') else dict(backbone)
    fps = data['fps']
    if fps is not None and not (isinstance(fps, (int, float)) and not isinstance(fps, bool)
                                and math.isfinite(fps) and fps > 0):
        raise ConfigKeyError(f"data.fps must be a positive number, or None to keep every "
                             f"source frame; got {fps!r}")
    return data, backbone, bank, ext


def list_videos(ann_file, subset):
    """{video id: annotated duration} of one subset, several (list/tuple) or all (None),
    in file order."""
    subsets = subset if isinstance(subset, (list, tuple)) else [subset]
    videos = {}
    for name in subsets:
        for vid, ann in load_annotations(ann_file, subset=name).items():
            videos.setdefault(vid, ann.duration)
    return videos


def _device(name, local_rank):
    if name in (None, 'auto'):
        name = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def file_sha256(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def backbone_name(backbone_cfg):
    """The bank's ``backbone`` attribute: a string that identifies the features."""
    return f"{backbone_signature(backbone_cfg)[:-1]}, " \
           f"weights={weights_name(backbone_cfg.get('pretrained'))})"


def build_backbone_for_extraction(backbone_cfg, device, seed):
    """The backbone in eval mode; random weights come from ``seed`` (same seed, same
    weights, same features), without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS.build(dict(backbone_cfg))
    return model.to(device).eval()


def job_settings(data, backbone_cfg, ext, model):
    """Everything that determines the features this job computes (``vedatad.membank``
    ``settings``)."""
    weights = backbone_cfg.get('pretrained')
    return dict(backbone=backbone_signature(backbone_cfg), weights=weights_name(weights),
                weights_sha256=file_sha256(weights) if weights else None,
                init_seed=None if weights else int(ext['init_seed']), fps=data['fps'],
                resize=data['resize'], crop_size=data['crop_size'], mean=list(data['mean']),
                std=list(data['std']), chunk_size=int(ext['chunk_size']),
                frames_per_row=int(model.frames_per_step), feat_dim=int(model.out_channels))


def open_or_create_bank(bank_cfg, model, backbone_cfg, chunk_size, settings, creation_cfg):
    """Create the bank if needed and open it; a bank with other settings is refused."""
    path = Path(bank_cfg['path'])
    if not (path / 'zarr.json').is_file():
        try:
            MemoryBank.create(path, feat_dim=model.out_channels,
                              backbone=backbone_name(backbone_cfg),
                              frames_per_row=model.frames_per_step, frames_per_chunk=chunk_size,
                              dtype=bank_cfg['dtype'], config=creation_cfg, settings=settings)
        except BankError:
            if not (path / 'zarr.json').is_file():  # not a lost race with another creator
                raise
    bank = MemoryBank.open(path, 'r+')
    bank.check_settings(settings, 'this extraction config')
    return bank


# ----- the extraction loop ---------------------------------------------------------------
class _Extractor:
    def __init__(self, model, bank, device, chunk_size, max_batch, amp, export_dir,
                 summary):
        self.model, self.bank, self.device = model, bank, device
        self.chunk_size, self.max_batch, self.amp = chunk_size, max_batch, amp
        self.export_dir = Path(export_dir) if export_dir else None
        self.summary = summary
        self.progress = {}  # video id -> {'done': items, 'parts': [(first_chunk, feats)]}

    @torch.no_grad()
    def features(self, imgs):
        """(3, T, H, W) -> float32 numpy (T / frames_per_row, C)."""
        start = time.perf_counter()
        x = imgs.to(self.device, non_blocking=True)[None]
        with torch.autocast(self.device.type, dtype=torch.float16,
                            enabled=self.amp and self.device.type == 'cuda'):
            feats = self.model.forward_chunks(x, self.chunk_size, self.max_batch)  # 1, C, T'
        feats = feats[0].float().t().cpu().numpy()
        self.summary.backbone_seconds += time.perf_counter() - start
        self.summary.frames += imgs.shape[1]
        return feats

    def handle(self, item):
        """Process one segment; returns True when it completed (or failed) its video."""
        vid = item['video_id']
        if vid in self.summary.failed:
            return False
        if item['error']:
            self.summary.failed[vid] = item['error']
            self.progress.pop(vid, None)
            return True
        try:
            return self._store(vid, item)
        except (BankError, RuntimeError, ValueError, OSError) as err:
            self.summary.failed[vid] = f'{type(err).__name__}: {err}'
            self.progress.pop(vid, None)
            return True

    def _store(self, vid, item):
        state = self.progress.setdefault(vid, dict(done=0, parts=[]))
        self.bank.add_video(vid, item['num_frames'])  # no-op after the first segment
        feats = self.features(item['imgs'])
        n_chunks = feats.shape[0] // self.bank.rows_per_chunk
        first = item['first_chunk']
        self.bank.write_chunks(vid, list(range(first, first + n_chunks)), feats, step=-1)
        if self.export_dir is not None:
            state['parts'].append((first, feats))
        state['done'] += 1
        if state['done'] < item['num_items']:
            return False
        self.bank.mark_complete(vid)
        if self.export_dir is not None:
            self._export(vid, state['parts'])
        self.progress.pop(vid)
        self.summary.done.append(vid)
        return True

    def _export(self, vid, parts):
        """ActionFormer-style features: float32 (rows, C), one row per frames_per_row frames."""
        parts.sort(key=lambda p: p[0])
        feats = np.concatenate([p[1] for p in parts])[:self.bank.num_rows(vid)]
        buf = io.BytesIO()
        np.save(buf, feats.astype(np.float32))
        atomic_write_bytes(self.export_dir / f'{vid}.npy', buf.getvalue())


def _export_info(export_dir, bank, fps):
    """What the feature-based detector config needs to know about the exported features."""
    atomic_write_json(Path(export_dir) / 'features_info.json', dict(
        feat_dim=bank.feat_dim, feat_stride=bank.frames_per_row,
        feat_num_frames=bank.frames_per_row, fps=fps, backbone=bank.backbone,
        layout='(T, C) float32, row i = frames [i * feat_stride, (i + 1) * feat_stride)'),
        indent=2)


def _lock_and_open(bank_cfg, model, backbone_cfg, settings, creation, rank, world):
    """Rank 0 takes the bank's writer lock, then creates or checks the bank; every rank
    learns the outcome (an error is raised on all ranks, so none waits forever), and the
    other ranks check that the lock names this job."""
    lock, status = None, None
    bank_path = Path(bank_cfg['path'])
    if rank == 0:
        try:
            lock = BankLock(bank_path, new_job_id()).acquire()
            open_or_create_bank(bank_cfg, model, backbone_cfg, settings['chunk_size'],
                                settings, creation)
            status = ('ok', lock.job_id)
        except BankError as err:
            if lock is not None:
                lock.release()
                lock = None
            status = ('error', str(err))
    status = _broadcast(status, world)
    if status[0] == 'error':
        raise BankError(status[1])
    try:
        if rank != 0:
            check_shared(bank_path, status[1])
        bank = MemoryBank.open(bank_path, 'r+')
        bank.check_settings(settings, 'this extraction config')
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock, bank


def extract_features(cfg, export_npy=None, progress=True):
    """Run the extraction described by an mmengine Config; returns ExtractionSummary
    (``failed`` gathered from all ranks). Raises ConfigKeyError / BankError before any
    work for a bad config or an incompatible or busy bank, ExtractionInterrupted on
    Ctrl-C."""
    data, backbone_cfg, bank_cfg, ext = read_config(cfg)
    if cfg.get('cpu_threads'):
        torch.set_num_threads(int(cfg['cpu_threads']))
    rank, world, local_rank = dist_info()
    device = _device(ext['device'], local_rank)
    model = build_backbone_for_extraction(backbone_cfg, device, ext['init_seed'])
    settings = job_settings(data, backbone_cfg, ext, model)
    creation = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    lock, bank = _lock_and_open(bank_cfg, model, backbone_cfg, settings, creation, rank,
                                world)
    try:
        return _run(cfg, data, ext, bank, model, device, export_npy, progress, rank, world)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg, data, ext, bank, model, device, export_npy, progress, rank, world):
    chunk_size = ext['chunk_size']
    if export_npy and rank == 0:
        _export_info(export_npy, bank, data['fps'])
    videos = list_videos(data['ann_file'], data['subset'])
    mine = list(videos)[rank::world]
    summary = ExtractionSummary()
    todo = [v for v in mine if not bank.is_complete(v)]
    summary.skipped = [v for v in mine if v not in todo]
    min_frames = ext['min_frames'] or model.frames_per_step
    source = ClipSegments(todo, data['root'], data['crop_size'], resize=data['resize'],
                          fps=data['fps'], backend=data['backend'],
                          video_ext=data['video_ext'], mean=data['mean'], std=data['std'],
                          chunk_size=chunk_size, chunks_per_item=ext['chunks_per_item'],
                          min_frames=min_frames, durations=videos,
                          min_frames_fraction=ext['min_frames_fraction'])
    workers = ext['num_workers']
    loader = DataLoader(source, batch_size=None, num_workers=workers,
                        worker_init_fn=worker_init_threads if workers else None,
                        prefetch_factor=ext['prefetch_factor'] if workers else None,
                        pin_memory=device.type == 'cuda')
    extractor = _Extractor(model, bank, device, chunk_size, ext['max_batch'], ext['amp'],
                           export_npy, summary)
    bar = tqdm(total=len(todo), desc=f'extract[{rank}]', unit='video',
               disable=not progress or rank != 0 and world > 1)
    start = time.perf_counter()
    batches = iter(loader)
    try:
        for item in batches:
            if extractor.handle(item):
                bar.update(1)
                bar.set_postfix(fps=f'{summary.frames / (time.perf_counter() - start):.1f}',
                                failed=len(summary.failed))
    except KeyboardInterrupt:
        bar.close()
        del batches  # stops the decode workers
        complete = sum(bank.is_complete(v) for v in mine)
        raise ExtractionInterrupted(
            f'interrupted: {complete} of {len(mine)} videos{_of_rank(rank, world)} are '
            f'complete in {bank.path} ({len(summary.done)} by this run); run the same '
            'command again to resume') from None
    summary.seconds = time.perf_counter() - start
    bar.close()
    for vid in extractor.progress:  # segments lost (should not happen): report, not hide
        summary.failed.setdefault(vid, 'incomplete: not every segment was processed')
    all_failed = {}
    for part in _gather(summary.failed, world):
        all_failed.update(part)
    summary.failed = all_failed
    _barrier(world)
    return summary


def _of_rank(rank, world):
    return f' of rank {rank}' if world > 1 else ''


def format_summary(summary, rank=0):
    lines = [f'rank {rank}: {len(summary.done)} videos extracted, {len(summary.skipped)} '
             f'already complete, {summary.frames} frames in {summary.seconds:.1f} s '
             f'({summary.frames_per_second:.1f} frames/s)']
    if summary.failed:
        lines.append(f'{len(summary.failed)} videos FAILED:')
        lines += [f'  {vid}: {err}' for vid, err in sorted(summary.failed.items())]
    return '\n'.join(lines)


def log_summary(summary, rank=0):
    print_log(format_summary(summary, rank), logger='current')
