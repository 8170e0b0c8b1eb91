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

``--export-npy DIR`` also writes each video's features as ``DIR/<id>.npy`` (float32, one row
per ``frames_per_row`` frames, streamed to disk as the segments arrive) and
``DIR/features_info.json``, which records how they were computed (``Extraction``): a
feature-based detector trained on them can compute the same features for new videos
(``extract_npy``, used by ``tools/infer.py``) with this module's decode and backbone code.
Features read from frame folders record the settings that made the frames (every folder's
``meta.json`` must agree), so a new video's frames are made the same way first; when they
cannot be (folders without recorded settings, raw ffmpeg options, folders that disagree),
the record says why.
"""
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mmengine.logging import print_log
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.annotations import load_annotations
from ..data.clip_source import ClipSegments, locate_videos, worker_init_threads
from ..data.ffmpeg import (FFmpegError, extract_frames, ffmpeg_version, find_ffmpeg,
                           frame_settings_kwargs, shared_frame_settings)
from ..membank import BankError, BankLock, MemoryBank, backbone_signature
from ..membank.lock import check_shared, new_job_id
from ..membank.settings import (DEFAULT_MEAN, DEFAULT_STD, settings_differences,
                                weights_name)
from ..registry import MODELS
from ..utils.config_keys import ConfigKeyError, check_keys, merge_section
from ..utils.io import atomic_write_json, disk_full_hint, fsync_dir, temp_name, write_all
from ..utils.workers import check_worker_tempdir

logger = logging.getLogger(__name__)
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
    fps: dict = field(default_factory=dict)        # video id -> frame rate of its features
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


# what new videos' features need from an extraction config, besides the backbone
RECORD_DATA_KEYS = ('fps', 'resize', 'crop_size', 'mean', 'std')
RECORD_EXTRACT_KEYS = ('chunk_size', 'chunks_per_item', 'max_batch', 'amp', 'init_seed',
                       'min_frames')


class ExtractorError(ValueError):
    """The features cannot be computed as recorded (weights missing or other settings)."""


@dataclass
class Extraction:
    """How a set of features was computed, enough to compute the same features for new
    videos: an extraction config's ``data`` (frame rate, resize, crop, mean/std),
    ``backbone`` (its weights file as an absolute path) and ``extract`` (chunking, amp, seed
    of random weights) sections; the ``settings`` they gave (``vedatad.membank.settings``,
    None: unknown) and the ``source`` the features were read from ('video files', 'frame
    folders' or 'mixed'). From frame folders: ``frames``, the settings that made their
    frames (``vedatad.data.ffmpeg.shared_frame_settings``), or None and
    ``frames_unrepeatable``, why a video's frames cannot be made the same way.
    ``--export-npy`` records it in ``features_info.json``; a feature dataset of that folder
    hands it to the checkpoint (``meta.data.extraction``)."""
    data: dict
    backbone: dict
    extract: dict
    settings: dict | None = None
    source: str | None = None
    frames: dict | None = None
    frames_unrepeatable: str | None = None

    def record(self):
        backbone = dict(self.backbone)
        if backbone.get('pretrained'):
            backbone['pretrained'] = os.path.abspath(backbone['pretrained'])
        return json.loads(json.dumps(dict(
            source=self.source, backbone=backbone, settings=self.settings,
            data={k: self.data[k] for k in RECORD_DATA_KEYS},
            extract={k: self.extract[k] for k in RECORD_EXTRACT_KEYS},
            frames=self.frames, frames_unrepeatable=self.frames_unrepeatable)))

    @classmethod
    def from_record(cls, record):
        """From ``record()``'s dict; its sections are checked like a config's."""
        data = merge_section('extraction.data', DATA_DEFAULTS, record['data'])
        data.update(root=None, ann_file=None)  # new videos come from elsewhere
        frames, unrepeatable = record.get('frames'), record.get('frames_unrepeatable')
        if record.get('source') == 'frame folders' and not (frames or unrepeatable):
            unrepeatable = ('the features were exported before the frame settings were '
                            'recorded')
        return cls(data, dict(record['backbone']),
                   merge_section('extraction.extract', EXTRACT_DEFAULTS, record['extract']),
                   record.get('settings'), record.get('source'), frames, unrepeatable)

    def from_frame_folders(self):
        return self.source == 'frame folders'

    @classmethod
    def from_config(cls, cfg):
        """From an extraction config (checked as ``read_config`` does)."""
        data, backbone, _, ext = read_config(cfg)
        return cls(data, backbone, ext)


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
class FeatureFileWriter:
    """Exported features: ``folder/<video id>.npy``, float32 (rows, C), one row per
    ``frames_per_row`` frames. Each video's rows are written into a temporary file next to
    it as its segments arrive (memory never holds a whole video's features; a full disk is
    an ``OSError`` naming the file, as plain writes report it), and the file is renamed into
    place after the last segment: an ``<id>.npy`` is always complete."""

    def __init__(self, folder, feat_dim, durable=True):
        self.folder, self.feat_dim, self.durable = Path(folder), int(feat_dim), durable
        self.folder.mkdir(parents=True, exist_ok=True)
        self._open = {}  # video id -> (temporary path, fd, header bytes, rows)

    def write(self, vid, num_rows, first_row, feats):
        """Rows ``first_row ...`` of a video with ``num_rows`` rows; rows past the video's
        end (features of the zero frames that pad its last chunk) are dropped."""
        try:
            if vid not in self._open:
                self._create(vid, int(num_rows))
            _, fd, header, rows = self._open[vid]
            keep = np.ascontiguousarray(feats[:max(0, rows - first_row)], dtype='<f4')
            write_all(fd, keep.tobytes(), header + first_row * self.feat_dim * 4)
        except OSError as err:
            raise OSError(err.errno, f'{self.folder / vid}.npy: not written ({err.strerror})'
                                     f'{disk_full_hint(err)}') from err

    def _create(self, vid, rows):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, dict(
            descr='<f4', fortran_order=False, shape=(rows, self.feat_dim)))  # as np.save
        tmp = temp_name(self.folder / f'{vid}.npy')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        self._open[vid] = tmp, fd, len(header.getvalue()), rows
        write_all(fd, header.getvalue())

    def finish(self, vid):
        tmp, fd, _, _ = self._open.pop(vid)
        try:
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.folder / f'{vid}.npy')
        if self.durable:
            fsync_dir(self.folder)

    def discard(self, vid):
        if vid in self._open:
            tmp, fd, _, _ = self._open.pop(vid)
            os.close(fd)
            tmp.unlink(missing_ok=True)

    def discard_all(self):
        for vid in list(self._open):
            self.discard(vid)


class _Extractor:
    """Segments in, features out: into the bank (whole chunks; ``bank`` None: no bank)
    and/or exported ``.npy`` files (``export``: a FeatureFileWriter or None)."""

    def __init__(self, model, bank, device, chunk_size, max_batch, amp, export, summary):
        self.model, self.bank, self.device = model, bank, device
        self.chunk_size, self.max_batch, self.amp = chunk_size, max_batch, amp
        self.frames_per_row = int(model.frames_per_step)
        self.export = export
        self.summary = summary
        self.progress = {}  # video id -> segments done

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
            self._fail(vid, item['error'])
            return True
        try:
            return self._store(vid, item)
        except (BankError, RuntimeError, ValueError, OSError) as err:
            self._fail(vid, f'{type(err).__name__}: {err}')
            return True

    def _fail(self, vid, message):
        self.summary.failed[vid] = message
        self.progress.pop(vid, None)
        if self.export is not None:
            self.export.discard(vid)

    def _store(self, vid, item):
        if self.bank is not None:
            self.bank.add_video(vid, item['num_frames'])  # no-op after the first segment
        feats = self.features(item['imgs'])  # rows, C
        rows_per_chunk = self.chunk_size // self.frames_per_row
        first = item['first_chunk']
        if self.bank is not None:
            n_chunks = feats.shape[0] // rows_per_chunk
            self.bank.write_chunks(vid, list(range(first, first + n_chunks)), feats, step=-1)
        if self.export is not None:
            num_rows = math.ceil(item['num_frames'] / self.frames_per_row)
            self.export.write(vid, num_rows, first * rows_per_chunk, feats)
        self.progress[vid] = self.progress.get(vid, 0) + 1
        if self.progress[vid] < item['num_items']:
            return False
        if self.bank is not None:
            self.bank.mark_complete(vid)
        if self.export is not None:
            self.export.finish(vid)
        del self.progress[vid]
        self.summary.done.append(vid)
        self.summary.fps[vid] = float(item['fps'])
        return True


def _clip_segments(video_ids, data, ext, min_frames, durations=None, paths=None):
    """The decoded, cropped, normalised segments of ``video_ids`` (under ``data['root']``,
    or at ``paths``) as ``data`` and ``ext`` (an extraction config's sections) say."""
    return ClipSegments(video_ids, data['root'], data['crop_size'], resize=data['resize'],
                        fps=data['fps'], backend=data['backend'], video_ext=data['video_ext'],
                        mean=data['mean'], std=data['std'], chunk_size=ext['chunk_size'],
                        chunks_per_item=ext['chunks_per_item'], min_frames=min_frames,
                        durations=durations, min_frames_fraction=ext['min_frames_fraction'],
                        paths=paths)


def _decoded(source, workers, prefetch_factor, device):
    """Segments decoded in ``workers`` processes (0: here) while the backbone runs here."""
    check_worker_tempdir('extract.num_workers', workers)
    return iter(DataLoader(source, batch_size=None, num_workers=workers,
                           worker_init_fn=worker_init_threads if workers else None,
                           prefetch_factor=prefetch_factor if workers else None,
                           pin_memory=device.type == 'cuda'))


def _feed(batches, extractor, bar):
    """Every decoded segment through the extractor; one progress step per video. Adds to
    the summary's time: one extraction may feed several sets of segments."""
    start = time.perf_counter()
    summary = extractor.summary
    for item in batches:
        if extractor.handle(item):
            bar.update(1)
            seconds = summary.seconds + time.perf_counter() - start
            bar.set_postfix(fps=f'{summary.frames / seconds:.1f}', failed=len(summary.failed))
    summary.seconds += time.perf_counter() - start
    for vid in extractor.progress:  # segments lost (should not happen): report, not hide
        summary.failed.setdefault(vid, 'incomplete: not every segment was processed')


def _source_record(data, video_ids):
    """(source, frames, frames_unrepeatable) of an ``Extraction``: 'video files' or 'frame
    folders' (or 'mixed'), what the features are computed from; for frame folders, the
    settings that made every folder's frames, or why a video's frames cannot repeat them."""
    paths = [p for p in locate_videos(data['root'], video_ids, data['video_ext']).values() if p]
    kinds = {'frame folders' if Path(p).is_dir() else 'video files' for p in paths}
    source = kinds.pop() if len(kinds) == 1 else 'mixed' if kinds else None
    if source != 'frame folders':
        return source, None, None
    return (source, *shared_frame_settings(paths))


def _export_info(export_dir, bank, data, backbone_cfg, ext, settings, video_ids):
    """What the feature-based detector needs to know about the exported features, and how
    to compute them again for new videos (``extraction``, see ``Extraction``)."""
    extraction = Extraction(data, backbone_cfg, ext, settings,
                            *_source_record(data, video_ids))
    atomic_write_json(Path(export_dir) / 'features_info.json', dict(
        feat_dim=bank.feat_dim, feat_stride=bank.frames_per_row,
        feat_num_frames=bank.frames_per_row, fps=data['fps'], backbone=bank.backbone,
        layout='(T, C) float32, row i = frames [i * feat_stride, (i + 1) * feat_stride)',
        extraction=extraction.record()), indent=2)


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
        return _run((data, backbone_cfg, ext, settings), bank, model, device, export_npy,
                    progress, rank, world)
    finally:
        if lock is not None:
            lock.release()


def _run(job, bank, model, device, export_npy, progress, rank, world):
    data, backbone_cfg, ext, settings = job
    videos = list_videos(data['ann_file'], data['subset'])
    if export_npy and rank == 0:
        _export_info(export_npy, bank, data, backbone_cfg, ext, settings, list(videos))
    mine = list(videos)[rank::world]
    summary = ExtractionSummary()
    todo = [v for v in mine if not bank.is_complete(v)]
    summary.skipped = [v for v in mine if v not in todo]
    min_frames = ext['min_frames'] or model.frames_per_step
    source = _clip_segments(todo, data, ext, min_frames, durations=videos)
    export = FeatureFileWriter(export_npy, model.out_channels) if export_npy else None
    extractor = _Extractor(model, bank, device, ext['chunk_size'], ext['max_batch'],
                           ext['amp'], export, summary)
    bar = tqdm(total=len(todo), desc=f'extract[{rank}]', unit='video',
               disable=not progress or rank != 0 and world > 1)
    batches = _decoded(source, ext['num_workers'], ext['prefetch_factor'], device)
    try:
        _feed(batches, extractor, bar)
    except KeyboardInterrupt:
        bar.close()
        del batches  # stops the decode workers
        if export is not None:
            export.discard_all()
        complete = sum(bank.is_complete(v) for v in mine)
        raise ExtractionInterrupted(
            f'interrupted: {complete} of {len(mine)} videos{_of_rank(rank, world)} are '
            f'complete in {bank.path} ({len(summary.done)} by this run); run the same '
            'command again to resume') from None
    bar.close()
    all_failed = {}
    for part in _gather(summary.failed, world):
        all_failed.update(part)
    summary.failed = all_failed
    _barrier(world)
    return summary


def _of_rank(rank, world):
    return f' of rank {rank}' if world > 1 else ''


def _recorded_backbone(extraction, device):
    """The extraction's backbone in eval mode; ExtractorError when its weights file is
    missing or it gives other settings (e.g. weights hash) than the recorded ones."""
    weights = extraction.backbone.get('pretrained')
    if weights and not os.path.isfile(weights):
        raise ExtractorError(f'{weights}: weights of the feature extractor not found')
    model = build_backbone_for_extraction(extraction.backbone, device,
                                          extraction.extract['init_seed'])
    settings = job_settings(extraction.data, extraction.backbone, extraction.extract, model)
    diffs = settings_differences(extraction.settings, settings)
    if diffs:
        raise ExtractorError('the feature extractor would compute other features than the '
                             'recorded ones: ' + '; '.join(
                                 f'{key}: recorded {was!r} vs now {now!r}'
                                 for key, was, now in diffs))
    return model


def extract_npy(extraction, videos, out_dir, device='auto', progress=True, num_workers=1):
    """Features of new videos ({video id: file}) computed as ``extraction`` says:
    the same decoding, crop, normalisation, backbone, weights and chunking as the extraction
    job (the same code, without a bank), written as ``--export-npy`` writes them
    (``out_dir/<id>.npy``). Videos are decoded segment by segment in ``num_workers``
    processes, so memory holds a few segments whatever the video length. For features read
    from frame folders, each video first becomes a frame folder made with the recorded
    frame settings (``extract_frames``), read from there, and deleted: the disk holds one
    video's frames at a time.

    Raises ExtractorError before any video when the weights file is missing, the backbone
    gives other settings than the recorded ones (e.g. another weights file), or frame
    folders are recorded without their frame settings. Returns an ExtractionSummary:
    ``done``, ``failed`` (video id -> reason), ``fps`` (per video).
    """
    if extraction.from_frame_folders() and not extraction.frames:
        raise ExtractorError('the frames of the training features cannot be made from a '
                             f'video: {extraction.frames_unrepeatable}')
    device = _device(device, 0)
    model = _recorded_backbone(extraction, device)
    ext = extraction.extract
    summary = ExtractionSummary()
    export = FeatureFileWriter(out_dir, model.out_channels, durable=False)  # scratch files
    extractor = _Extractor(model, None, device, ext['chunk_size'], ext['max_batch'],
                           ext['amp'], export, summary)
    with tqdm(total=len(videos), desc='extract', unit='video', disable=not progress) as bar:
        groups = _decode_groups(extraction, videos, out_dir, summary, bar)
        try:
            for group in groups:  # {video id: file or frame folder}
                source = _clip_segments(list(group), extraction.data, ext,
                                        ext['min_frames'] or model.frames_per_step,
                                        paths=group)
                _feed(_decoded(source, num_workers, ext['prefetch_factor'], device),
                      extractor, bar)
        finally:
            groups.close()  # deletes the frame folder in use, if any
            export.discard_all()
    return summary


def _decode_groups(extraction, videos, out_dir, summary, bar):
    """What the extraction decodes, as {video id: file or frame folder}: all video files at
    once, or, for features read from frame folders, each video as a frame folder made with
    the recorded frame settings in a temporary folder under ``out_dir``, one at a time (a
    folder is deleted when the next one is asked for, or the generator is closed). A video
    whose frames cannot be made goes to ``summary.failed``."""
    if not extraction.from_frame_folders():
        yield dict(videos)
        return
    _warn_other_ffmpeg(extraction.frames.get('ffmpeg_version'))
    with tempfile.TemporaryDirectory(prefix='.frames_', dir=out_dir) as scratch:
        yield from _as_frame_folders(videos, extraction.frames, scratch, summary, bar)


def _as_frame_folders(videos, frames, scratch, summary, bar):
    """{video id: its frame folder in ``scratch``}, one video at a time (see above)."""
    for vid, path in videos.items():
        folder = Path(scratch) / vid
        bar.set_postfix_str(f'frames of {vid}')
        try:
            extract_frames(path, folder, **frame_settings_kwargs(frames))
        except (FFmpegError, OSError) as err:
            summary.failed[vid] = str(err)
            bar.update(1)
            continue
        try:
            yield {vid: str(folder)}
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _warn_other_ffmpeg(recorded):
    """Another ffmpeg may decode, scale or code JPEG frames differently: say so, go on."""
    now = ffmpeg_version(find_ffmpeg())
    if now not in (recorded if isinstance(recorded, list) else [recorded]):
        logger.warning('the training frames were made by ffmpeg %s, this one is %s: the '
                       "new videos' frames (JPEG bytes, scaling) may differ slightly",
                       recorded, now)


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
