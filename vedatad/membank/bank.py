"""The long-term memory bank: per-video backbone features in a zarr v3 group on disk.

Layout (DESIGN.md, "Memory bank format")::

    BANK/zarr.json             group attributes: format, format_version, backbone, feat_dim,
                               frames_per_row, frames_per_chunk, rows_per_chunk, dtype, config
    BANK/feats/<video_id>      (rows, C) float16, rows = ceil(num_frames / frames_per_row),
                               zarr chunk (rows_per_chunk, C) = one clip chunk of
                               frames_per_chunk frames; attributes num_frames, complete
    BANK/steps/<video_id>      (num_chunks,) int64, one zarr chunk per entry: the training step
                               that last wrote each clip chunk, -1 = never

Every read and write covers whole clip chunks, and each feature chunk is written to a
temporary file renamed into place (as zarr's local store does), so concurrent writers
(different ranks, different videos or even the same chunk) never tear a chunk and a killed
writer leaves old or new data. Step entries (8 bytes each) are overwritten in place with one
aligned write, which spares a file creation per entry. A write stores features first and
then the step entries; a crash in between leaves new features with the older step (an
over-estimate of staleness, never wrong features). Chunk files are read and written by
``chunk_files.ChunkFiles`` directly (zarr's generic path costs ~1 ms per call); they remain
ordinary zarr v3 chunks that zarr reads and writes.

Modes: 'r' (read-only; writes raise), 'r+' (read-write), and ``frozen=True`` where writes are
validated and then skipped, counted in ``skipped_writes``: training code can call
``write_chunks`` unconditionally and a frozen bank stays bit-identical.
"""
import json
import math
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import zarr
from zarr.storage import LocalStore

from .chunk_files import ChunkFiles

FORMAT = 'vedatad.membank'
FORMAT_VERSION = 1


class BankError(RuntimeError):
    """A memory-bank problem; the message names the bank path and the video."""


class BankReadOnlyError(BankError):
    pass


def _jsonable(obj):
    """Creation configs may hold tuples or paths: store what JSON can represent."""
    return json.loads(json.dumps(obj, default=str))


def _check_video_id(path, video_id):
    if not isinstance(video_id, str) or not video_id or '/' in video_id \
            or video_id.startswith('__') or set(video_id) == {'.'}:
        raise BankError(f'{path}: video id {video_id!r} cannot name a zarr array '
                        "(empty, contains '/', starts with '__' or is only dots)")


class _VideoArrays:
    """One video's zarr arrays, plus direct chunk-file access when their layout allows."""

    def __init__(self, bank_path, video_id, feats, steps):
        self.feats, self.steps = feats, steps
        self.rows = feats.shape[0]
        self.num_chunks = steps.shape[0]
        self.feat_files = ChunkFiles.for_array(bank_path / 'feats' / video_id, feats)
        self.step_files = ChunkFiles.for_array(bank_path / 'steps' / video_id, steps)


def _cast_into(dst, src, piece=16384):
    """dst[...] = src (2-D) across float16 / float32.

    torch's vectorised casts are ~10x faster than numpy's float16 conversions, which would
    dominate a window read. Pieces stay under torch's parallel grain size: on a busy machine
    waking the intra-op thread pool for a few hundred kB costs more than the cast itself.
    """
    dst_t = torch.from_numpy(dst)
    src_t = torch.from_numpy(np.ascontiguousarray(src))
    rows = max(1, piece // max(1, dst.shape[-1]))
    for start in range(0, dst.shape[0], rows):
        dst_t[start:start + rows].copy_(src_t[start:start + rows])


def _contiguous_runs(sorted_ids):
    """[0, 1, 2, 5, 6] -> [(0, 3), (5, 7)] as half-open ranges."""
    runs = []
    for cid in sorted_ids:
        if runs and runs[-1][1] == cid:
            runs[-1][1] += 1
        else:
            runs.append([cid, cid + 1])
    return [tuple(r) for r in runs]


class MemoryBank:
    """Open with ``MemoryBank.create`` / ``MemoryBank.open`` / ``MemoryBank.copy``."""

    def __init__(self, path, group, mode, frozen):
        self.path = Path(path)
        self.mode = mode
        self.frozen = frozen
        self.skipped_writes = 0
        self._group = group
        attrs = dict(group.attrs)
        if attrs.get('format') != FORMAT:
            raise BankError(f'{self.path}: not a memory bank (group attribute format='
                            f'{attrs.get("format")!r}, expected {FORMAT!r})')
        if attrs.get('format_version') != FORMAT_VERSION:
            raise BankError(f'{self.path}: bank format version {attrs.get("format_version")} '
                            f'is not supported (expected {FORMAT_VERSION})')
        self.attrs = attrs
        self.feat_dim = int(attrs['feat_dim'])
        self.frames_per_row = int(attrs['frames_per_row'])
        self.frames_per_chunk = int(attrs['frames_per_chunk'])
        self.rows_per_chunk = int(attrs['rows_per_chunk'])
        self.dtype = np.dtype(attrs['dtype'])
        self.backbone = attrs['backbone']
        self._arrays = {}  # video id -> (feats array, steps array), opened once

    # ----- creation / opening --------------------------------------------------------------
    @classmethod
    def create(cls, path, feat_dim, backbone, frames_per_row=2, frames_per_chunk=32,
               dtype='float16', config=None, overwrite=False):
        path = Path(path)
        if np.dtype(dtype) not in (np.float16, np.float32):
            raise BankError(f'{path}: dtype must be float16 or float32, got {dtype}')
        if frames_per_chunk % frames_per_row:
            raise BankError(f'{path}: frames_per_chunk {frames_per_chunk} is not a multiple '
                            f'of frames_per_row {frames_per_row}')
        if path.exists() and not overwrite:
            raise BankError(f'{path}: already exists (open it, or pass overwrite=True)')
        if path.exists():
            shutil.rmtree(path)
        attrs = dict(format=FORMAT, format_version=FORMAT_VERSION, backbone=str(backbone),
                     feat_dim=int(feat_dim), frames_per_row=int(frames_per_row),
                     frames_per_chunk=int(frames_per_chunk),
                     rows_per_chunk=frames_per_chunk // frames_per_row,
                     dtype=np.dtype(dtype).name, config=_jsonable(config or {}),
                     created=time.strftime('%Y-%m-%dT%H:%M:%S'))
        group = zarr.open_group(store=LocalStore(str(path)), mode='w', attributes=attrs)
        group.require_group('feats')
        group.require_group('steps')
        return cls(path, group, 'r+', False)

    @classmethod
    def open(cls, path, mode='r', frozen=False):
        path = Path(path)
        if mode not in ('r', 'r+'):
            raise BankError(f"{path}: mode must be 'r' or 'r+', got {mode!r}")
        if not (path / 'zarr.json').is_file():
            raise BankError(f'{path}: no memory bank here (zarr.json missing); create one '
                            'with tools/data/extract_features.py')
        store = LocalStore(str(path), read_only=(mode == 'r'))
        return cls(path, zarr.open_group(store=store, mode=mode), mode, frozen)

    @classmethod
    def copy(cls, src, dst, overwrite=False, frozen=False):
        """Copy a template bank to a working bank (training modifies banks in place).

        The copy goes to a temporary sibling folder renamed into place, so ``dst`` is
        either absent or complete.
        """
        src, dst = Path(src), Path(dst)
        cls.open(src, 'r')  # validates the source
        if dst.exists():
            if not overwrite:
                raise BankError(f'{dst}: already exists; not copying {src} over it')
            shutil.rmtree(dst)
        tmp = dst.with_name(f'.{dst.name}.{uuid.uuid4().hex}.copying')
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns('*.partial'))
            os.replace(tmp, dst)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return cls.open(dst, 'r+', frozen=frozen)

    # ----- videos --------------------------------------------------------------------------
    def num_rows_for(self, num_frames):
        return math.ceil(num_frames / self.frames_per_row)

    def add_video(self, video_id, num_frames):
        """Create the video's arrays; a no-op when it exists with the same frame count."""
        self._check_writable(video_id, allow_frozen=True)
        _check_video_id(self.path, video_id)
        num_frames = int(num_frames)
        if num_frames < 1:
            raise BankError(f'{self.path}: video {video_id}: num_frames must be >= 1, '
                            f'got {num_frames}')
        if self.has_video(video_id):
            return self._check_frames(video_id, num_frames)
        rows = self.num_rows_for(num_frames)
        chunks = math.ceil(rows / self.rows_per_chunk)
        try:
            steps = self._group.create_array(
                f'steps/{video_id}', shape=(chunks,), chunks=(1,), dtype='int64',
                fill_value=-1, compressors=None)
            # created last: its presence means the video exists
            feats = self._group.create_array(
                f'feats/{video_id}', shape=(rows, self.feat_dim),
                chunks=(self.rows_per_chunk, self.feat_dim), dtype=self.dtype,
                fill_value=0, compressors=None,
                attributes=dict(num_frames=num_frames, complete=False))
        except zarr.errors.ContainsArrayError:  # another process created it first
            return self._check_frames(video_id, num_frames)
        self._arrays[video_id] = _VideoArrays(self.path, video_id, feats, steps)

    def _check_frames(self, video_id, num_frames):
        have = self.num_frames(video_id)
        if have != num_frames:
            raise BankError(f'{self.path}: video {video_id} exists with {have} frames, '
                            f'not {num_frames}')

    def has_video(self, video_id):
        if video_id in self._arrays:
            return True
        return (self.path / 'feats' / str(video_id) / 'zarr.json').is_file()

    def video_ids(self):
        # a directory listing: zarr's member listing would parse every array's metadata
        folder = self.path / 'feats'
        return sorted(p.name for p in folder.iterdir() if (p / 'zarr.json').is_file())

    def _open_video(self, video_id):
        arrays = self._arrays.get(video_id)
        if arrays is None:
            if not self.has_video(video_id):
                raise BankError(f'{self.path}: video {video_id!r} is not in the bank')
            arrays = _VideoArrays(self.path, video_id, self._group[f'feats/{video_id}'],
                                  self._group[f'steps/{video_id}'])
            self._arrays[video_id] = arrays
        return arrays

    def num_frames(self, video_id):
        return int(self._open_video(video_id).feats.attrs['num_frames'])

    def num_rows(self, video_id):
        return self._open_video(video_id).rows

    def num_chunks(self, video_id):
        return self._open_video(video_id).num_chunks

    def mark_complete(self, video_id):
        """Record that every chunk of the video holds extracted features."""
        self._check_writable(video_id, allow_frozen=False)
        feats = self._open_video(video_id).feats
        feats.update_attributes(dict(complete=True))

    def is_complete(self, video_id):
        if not self.has_video(video_id):
            return False
        # fresh metadata read: another process may have completed it
        meta = json.loads((self.path / 'feats' / video_id / 'zarr.json').read_text())
        return bool(meta.get('attributes', {}).get('complete', False))

    # ----- reading / writing ---------------------------------------------------------------
    def read_chunks(self, video_id, chunk_ids):
        """Whole clip chunks as stored: (len(chunk_ids), rows_per_chunk, C) in the bank's dtype
        (float16 by default, no cast). Rows of the last chunk past the video end are zero."""
        arrays = self._open_video(video_id)
        ids = [int(c) for c in chunk_ids]
        bad = [c for c in ids if not 0 <= c < arrays.num_chunks]
        if bad:
            raise BankError(f'{self.path}: video {video_id}: chunk ids {bad} outside '
                            f'[0, {arrays.num_chunks})')
        rpc = self.rows_per_chunk
        out = np.empty((len(ids), rpc, self.feat_dim), self.dtype)
        for k, cid in enumerate(ids):
            if arrays.feat_files is None:
                start, stop = cid * rpc, min((cid + 1) * rpc, arrays.rows)
                out[k] = 0
                out[k, :stop - start] = arrays.feats[start:stop]
            else:
                arrays.feat_files.read_into(cid, out[k])
                tail = (cid + 1) * rpc - arrays.rows
                if tail > 0:
                    out[k, rpc - tail:] = 0
        return out

    def read_window(self, video_id, first_chunk, num_chunks):
        """(num_chunks * rows_per_chunk, C) float32; rows past the video end are zero."""
        arrays = self._open_video(video_id)
        if first_chunk < 0 or num_chunks < 0:
            raise BankError(f'{self.path}: video {video_id}: negative window '
                            f'({first_chunk}, {num_chunks})')
        rpc = self.rows_per_chunk
        out = np.zeros((num_chunks * rpc, self.feat_dim), dtype=np.float32)
        stop_chunk = min(first_chunk + num_chunks, arrays.num_chunks)
        if arrays.feat_files is None:
            start, stop = first_chunk * rpc, min(stop_chunk * rpc, arrays.rows)
            if stop > start:
                out[:stop - start] = arrays.feats[start:stop]
            return out
        stored = np.empty((max(stop_chunk - first_chunk, 0), rpc, self.feat_dim), self.dtype)
        for k, chunk in enumerate(range(first_chunk, stop_chunk)):
            arrays.feat_files.read_into(chunk, stored[k])
        _cast_into(out[:stored.shape[0] * rpc], stored.reshape(-1, self.feat_dim))
        tail = stop_chunk * rpc - arrays.rows  # rows of the last chunk past the video end
        if stop_chunk == arrays.num_chunks and tail > 0 and stop_chunk > first_chunk:
            end = (stop_chunk - first_chunk) * rpc
            out[end - tail:end] = 0
        return out

    def read_steps(self, video_id, first_chunk, num_chunks):
        """(num_chunks,) int64 last-written steps; -1 for never written or past the end."""
        arrays = self._open_video(video_id)
        out = np.full(num_chunks, -1, dtype=np.int64)
        stop = min(first_chunk + num_chunks, arrays.num_chunks)
        if stop <= first_chunk:
            return out
        if arrays.step_files is None:
            out[:stop - first_chunk] = arrays.steps[first_chunk:stop]
        else:
            entry = np.empty(1, np.int64)
            for k, chunk in enumerate(range(first_chunk, stop)):
                arrays.step_files.read_into(chunk, entry)
                out[k] = entry[0]
        return out

    def write_chunks(self, video_id, chunk_ids, feats, step):
        """Store whole clip chunks of one video.

        chunk_ids: distinct chunk indices; feats: (len * rows_per_chunk, C) or
        (len, rows_per_chunk, C), numpy or torch. Rows of the last chunk past the video end
        are dropped. Returns True when written, False when skipped by a frozen bank.
        """
        self._check_writable(video_id, allow_frozen=True)
        arrays = self._open_video(video_id)
        data = self._validate_write(video_id, chunk_ids, feats, arrays.num_chunks)
        if self.frozen:
            self.skipped_writes += 1
            return False
        ids = [int(c) for c in chunk_ids]
        rpc, rows = self.rows_per_chunk, arrays.rows
        last = arrays.num_chunks - 1
        if last in ids and (last + 1) * rpc > rows:  # rows past the video end are not kept
            data = data.copy()
            data[ids.index(last), rows - last * rpc:] = 0
        if arrays.feat_files is None:
            self._write_with_zarr(arrays, ids, data, step)
            return True
        for cid, chunk in zip(ids, data):
            arrays.feat_files.write(cid, chunk)
        step_chunk = np.full(1, int(step), dtype=np.int64)
        for cid in ids:  # after the features: a crash in between over-states staleness
            arrays.step_files.write_small_in_place(cid, step_chunk)
        return True

    def _write_with_zarr(self, arrays, ids, data, step):
        order = np.argsort(ids, kind='stable')
        ids, data = [ids[i] for i in order], data[order]
        rpc, pos = self.rows_per_chunk, 0
        for first, stop in _contiguous_runs(ids):
            block = data[pos:pos + stop - first].reshape(-1, self.feat_dim)
            pos += stop - first
            end = min(stop * rpc, arrays.rows)
            arrays.feats[first * rpc:end] = block[:end - first * rpc]
        for first, stop in _contiguous_runs(ids):
            arrays.steps[first:stop] = np.full(stop - first, int(step), dtype=np.int64)

    def _validate_write(self, video_id, chunk_ids, feats, num_chunks):
        if hasattr(feats, 'detach'):  # torch tensor, possibly on GPU / half precision
            feats = feats.detach().float().cpu().numpy()
        feats = np.asarray(feats, dtype=np.float32)
        rpc, n = self.rows_per_chunk, len(chunk_ids)
        where = f'{self.path}: video {video_id}'
        if feats.ndim == 2 and feats.shape == (n * rpc, self.feat_dim):
            feats = feats.reshape(n, rpc, self.feat_dim)
        if feats.shape != (n, rpc, self.feat_dim):
            raise BankError(f'{where}: write of {n} chunks needs ({n * rpc}, {self.feat_dim}) '
                            f'or ({n}, {rpc}, {self.feat_dim}) features, got {feats.shape} '
                            '(only whole chunks are written)')
        ids = [int(c) for c in chunk_ids]
        if len(set(ids)) != n:
            raise BankError(f'{where}: repeated chunk ids {ids}')
        bad = [c for c in ids if not 0 <= c < num_chunks]
        if bad:
            raise BankError(f'{where}: chunk ids {bad} outside [0, {num_chunks})')
        if not np.isfinite(feats).all():
            raise BankError(f'{where}: refusing to store non-finite features in chunks {ids}')
        stored = np.empty(feats.shape, self.dtype)
        _cast_into(stored.reshape(-1, self.feat_dim), feats.reshape(-1, self.feat_dim))
        return stored

    def _check_writable(self, video_id, allow_frozen):
        if self.mode == 'r':
            raise BankReadOnlyError(f'{self.path}: opened read-only; cannot write video '
                                    f'{video_id}')
        if self.frozen and not allow_frozen:
            raise BankReadOnlyError(f'{self.path}: frozen bank; cannot modify video '
                                    f'{video_id}')

    # ----- statistics ----------------------------------------------------------------------
    def staleness(self, current_step, video_ids=None):
        """Age (current_step - last write step) over the written chunks of the given videos
        (all by default): {'chunks', 'written', 'never_written', 'mean', 'median', 'max',
        'min'}; ages are None when nothing was written by training."""
        steps = [self.read_steps(v, 0, self.num_chunks(v))
                 for v in (video_ids or self.video_ids())]
        steps = np.concatenate(steps) if steps else np.zeros(0, np.int64)
        written = steps[steps >= 0]
        stats = dict(chunks=int(steps.size), written=int(written.size),
                     never_written=int(steps.size - written.size))
        if written.size:
            age = int(current_step) - written
            stats.update(mean=float(age.mean()), median=float(np.median(age)),
                         max=int(age.max()), min=int(age.min()))
        else:
            stats.update(mean=None, median=None, max=None, min=None)
        return stats

    # A bank handed to DataLoader workers or spawned processes reopens itself there.
    def __getstate__(self):
        return dict(path=str(self.path), mode=self.mode, frozen=self.frozen)

    def __setstate__(self, state):
        fresh = MemoryBank.open(state['path'], state['mode'], state['frozen'])
        self.__dict__.update(fresh.__dict__)

    def __repr__(self):
        return (f'MemoryBank({str(self.path)!r}, mode={self.mode!r}, frozen={self.frozen}, '
                f'backbone={self.backbone!r}, C={self.feat_dim})')
