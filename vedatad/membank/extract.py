"""Fill a memory bank with backbone features of every video (``tools/data/extract_features.py``).

Decoding runs in DataLoader worker processes (``ClipSegments``) while the backbone runs in
the main process, in eval mode, chunk by chunk (``forward_chunks``: 32-frame chunks are
independent, as during training). Each segment's features go to the bank as whole chunks
right away; a video is marked complete after its last segment, so an interrupted job
resumes by skipping complete videos and redoing the others. Under ``torchrun`` each rank
takes every WORLD_SIZE-th video; failures are gathered and reported by name.
"""
import io
import json
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
from ..registry import MODELS
from ..utils.io import atomic_write_bytes, atomic_write_json
from .bank import BankError, MemoryBank
from .clip_source import ClipSegments, worker_init_threads


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


# ----- set-up ----------------------------------------------------------------------------
def list_videos(ann_file, subset):
    """Video ids of one subset, several (list/tuple) or all (None), in file order."""
    subsets = subset if isinstance(subset, (list, tuple)) else [subset]
    ids = []
    for name in subsets:
        ids += [v for v in load_annotations(ann_file, subset=name) if v not in ids]
    return ids


def _device(name, local_rank):
    if name in (None, 'auto'):
        name = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def backbone_name(backbone_cfg):
    """A string that identifies the features: type, arch and weights file."""
    weights = backbone_cfg.get('pretrained')
    return (f"{backbone_cfg['type']}(arch={backbone_cfg.get('arch')}, "
            f"weights={Path(weights).name if weights else None})")


def open_or_create_bank(bank_cfg, model, name, chunk_size, creation_cfg, rank, world):
    path = Path(bank_cfg['path'])
    if rank == 0 and not (path / 'zarr.json').is_file():
        MemoryBank.create(path, feat_dim=model.out_channels, backbone=name,
                          frames_per_row=model.frames_per_step, frames_per_chunk=chunk_size,
                          dtype=bank_cfg.get('dtype', 'float16'), config=creation_cfg)
    _barrier(world)
    bank = MemoryBank.open(path, 'r+')
    expected = dict(feat_dim=model.out_channels, frames_per_row=model.frames_per_step,
                    frames_per_chunk=chunk_size, backbone=name)
    wrong = {k: (bank.attrs[k], v) for k, v in expected.items() if bank.attrs[k] != v}
    if wrong:
        raise BankError(f'{path}: existing bank was made with other settings '
                        f'(attribute: (bank, config)) {wrong}; use another bank path')
    return bank


# Weights the config does not load (pretrained=None, or layers a checkpoint lacks) start from
# this seed, never from the process's random state (PyTorch seeds its default generator
# randomly at start-up): the same config always fills the same bank. It is train_cfg.seed's
# default, so a random-weight backbone here is the one training starts from.
DEFAULT_INIT_SEED = 1234567891


def build_backbone_for_extraction(backbone_cfg, device, init_seed=DEFAULT_INIT_SEED):
    torch.manual_seed(init_seed)
    model = MODELS.build(dict(backbone_cfg))
    return model.to(device).eval()


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
        """Process one segment; returns True when it completed its video."""
        vid = item['video_id']
        if vid in self.summary.failed:
            return False
        if item['error']:
            self.summary.failed[vid] = item['error']
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
            self._export(vid, state['parts'], item)
        self.progress.pop(vid)
        self.summary.done.append(vid)
        return True

    def _export(self, vid, parts, item):
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


def extract_features(cfg, export_npy=None, progress=True):
    """Run the extraction described by an mmengine Config; returns ExtractionSummary
    (``failed`` gathered from all ranks)."""
    data, ext = cfg['data'], cfg.get('extract', {})
    rank, world, local_rank = dist_info()
    device = _device(ext.get('device', 'auto'), local_rank)
    chunk_size = ext.get('chunk_size', 32)
    model = build_backbone_for_extraction(cfg['backbone'], device,
                                          ext.get('init_seed', DEFAULT_INIT_SEED))
    name = backbone_name(cfg['backbone'])
    creation = json.loads(json.dumps(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg),
                                     default=str))
    bank = open_or_create_bank(cfg['bank'], model, name, chunk_size, creation, rank, world)
    if export_npy and rank == 0:
        _export_info(export_npy, bank, data.get('fps'))

    mine = list_videos(data['ann_file'], data.get('subset'))[rank::world]
    summary = ExtractionSummary()
    todo = [v for v in mine if not bank.is_complete(v)]
    summary.skipped = [v for v in mine if v not in todo]
    source = ClipSegments(todo, data['root'], data['crop_size'], resize=data.get('resize'),
                          fps=data.get('fps'), backend=data.get('backend', 'auto'),
                          video_ext=data.get('video_ext'),
                          mean=data.get('mean', (123.675, 116.28, 103.53)),
                          std=data.get('std', (58.395, 57.12, 57.375)),
                          chunk_size=chunk_size, chunks_per_item=ext.get('chunks_per_item', 8))
    workers = ext.get('num_workers', 2)
    loader = DataLoader(source, batch_size=None, num_workers=workers,
                        worker_init_fn=worker_init_threads if workers else None,
                        prefetch_factor=ext.get('prefetch_factor', 2) if workers else None,
                        pin_memory=device.type == 'cuda')
    extractor = _Extractor(model, bank, device, chunk_size, ext.get('max_batch'),
                           ext.get('amp', False), export_npy, summary)
    bar = tqdm(total=len(todo), desc=f'extract[{rank}]', unit='video',
               disable=not progress or rank != 0 and world > 1)
    start = time.perf_counter()
    for item in loader:
        if extractor.handle(item):
            bar.update(1)
            bar.set_postfix(fps=f'{summary.frames / (time.perf_counter() - start):.1f}',
                            failed=len(summary.failed))
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
