"""The long-term memory bank: per-video backbone features in a zarr v3 group on disk.

Layout (DESIGN.md, "Memory bank format"; format version 2)::

    BANK/zarr.json           group attributes: format, format_version, backbone, feat_dim,
                             frames_per_row, frames_per_chunk, rows_per_chunk, dtype,
                             settings (what determines the features), config, created
    BANK/feats/<video_id>    (rows, C) float16, rows = ceil(num_frames / frames_per_row);
                             zarr chunk (rows_per_chunk, C) = one clip chunk of
                             frames_per_chunk frames, all chunks of a video in one shard
                             (``shard.py``); attributes num_frames, complete
    BANK/steps/<video_id>    (num_chunks,) int64, one zarr chunk: the training step that
                             last wrote each clip chunk, -1 = never
    BANK/journal/            consistent points for resuming (``journal.py``)
    BANK/.lock               the writing job (``lock.py``)

Every read and write covers whole clip chunks. A write appends the new chunk bytes and then
repoints the chunk's index entry, so concurrent writers (ranks, processes, even of the same
chunk) and readers never see a torn chunk, a killed writer leaves each chunk old or new,
and a full disk raises ``BankFullError`` leaving the old chunks intact. Writes are
synchronous: when ``write_chunks`` returns, every process reads the new chunks.
``flush()`` makes them durable (fsync): call it before a checkpoint and at the end of an
epoch. Every chunk carries a crc32c that reads check.

Modes: 'r' (read-only; writes raise), 'r+' (read-write), and ``frozen=True`` where writes are
validated and then skipped, counted in ``skipped_writes``: training code can call
``write_chunks`` unconditionally and a frozen bank stays bit-identical.
"""
import errno
import json
import math
import os
import shutil
import sys
import time
import uuid
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..utils.io import AtomicWriteError, atomic_write_json, fsync_dir, publish_new_file
from .errors import (BankCorruptError, BankError, BankFullError, BankLockedError,
                     BankReadOnlyError)
from .journal import Journal
from .lock import read_holder
from .settings import format_differences, settings_differences, settings_from_config
from .shard import EMPTY, VideoFiles

__all__ = ['MemoryBank', 'BankError', 'BankReadOnlyError', 'BankFullError',
           'BankCorruptError', 'BankLockedError', 'FORMAT', 'FORMAT_VERSION']

FORMAT = 'vedatad.membank'
FORMAT_VERSION = 2
MAX_OPEN_VIDEOS = 128  # videos whose two descriptors stay open per process


def _jsonable(obj):
    """Creation configs may hold tuples or paths: store what JSON can represent."""
    return json.loads(json.dumps(obj, default=str))


def _check_video_id(path, video_id):
    if not isinstance(video_id, str) or not video_id or '/' in video_id \
            or video_id.startswith('__') or set(video_id) == {'.'}:
        raise BankError(f'{path}: video id {video_id!r} cannot name a zarr array '
                        "(empty, contains '/', starts with '__' or is only dots)")


def _group_meta(attrs=None):
    return dict(zarr_format=3, node_type='group', attributes=attrs or {})


def _feats_meta(rows, num_chunks, rpc, feat_dim, dtype, num_frames, complete):
    """zarr v3 metadata of a video's feature array: one shard, index first, crc32c'd chunks."""
    le = {'name': 'bytes', 'configuration': {'endian': 'little'}}
    return dict(
        zarr_format=3, node_type='array', shape=[rows, feat_dim], data_type=dtype,
        chunk_grid={'name': 'regular',
                    'configuration': {'chunk_shape': [num_chunks * rpc, feat_dim]}},
        chunk_key_encoding={'name': 'default', 'configuration': {'separator': '/'}},
        fill_value=0.0,
        codecs=[{'name': 'sharding_indexed', 'configuration': {
            'chunk_shape': [rpc, feat_dim], 'codecs': [le, {'name': 'crc32c'}],
            'index_codecs': [le], 'index_location': 'start'}}],
        attributes=dict(num_frames=int(num_frames), complete=bool(complete)),
        storage_transformers=[])


def _steps_meta(num_chunks):
    return dict(
        zarr_format=3, node_type='array', shape=[num_chunks], data_type='int64',
        chunk_grid={'name': 'regular', 'configuration': {'chunk_shape': [num_chunks]}},
        chunk_key_encoding={'name': 'default', 'configuration': {'separator': '/'}},
        fill_value=-1, codecs=[{'name': 'bytes', 'configuration': {'endian': 'little'}}],
        attributes={}, storage_transformers=[])


def _check_layout(path, meta, rpc, feat_dim, dtype):
    """The feature array must have this format's layout (the chunk reader relies on it)."""
    try:
        shard = meta['codecs'][0]
        conf = shard['configuration']
        ok = (len(meta['codecs']) == 1 and shard['name'] == 'sharding_indexed'
              and conf['index_location'] == 'start'
              and [c['name'] for c in conf['codecs']] == ['bytes', 'crc32c']
              and conf['codecs'][0].get('configuration', {}).get('endian') == 'little'
              and [c['name'] for c in conf['index_codecs']] == ['bytes']
              and list(conf['chunk_shape']) == [rpc, feat_dim]
              and meta['data_type'] == dtype and meta['shape'][1] == feat_dim
              and meta['chunk_key_encoding']['configuration']['separator'] == '/')
    except (KeyError, IndexError, TypeError):
        ok = False
    if not ok:
        raise BankCorruptError(f'{path}: not a feature array of this bank format (format '
                               f'{FORMAT_VERSION}: one crc32c shard per video, index first); '
                               'was it rewritten by another tool?')


def _cast_into(dst, src, piece=16384):
    """dst[...] = src (2-D) across float16 / float32.

    torch's vectorised casts are ~10x faster than numpy's float16 conversions, which would
    dominate a window read. Pieces stay under torch's parallel grain size: on a busy machine
    waking the intra-op thread pool for a few hundred kB costs more than the cast itself.
    Processes that never imported torch (storage tools) cast with numpy (same values).
    """
    torch = sys.modules.get('torch')
    if torch is None:
        dst[...] = src
        return
    dst_t = torch.from_numpy(dst)
    src_t = torch.from_numpy(np.ascontiguousarray(src))
    rows = max(1, piece // max(1, dst.shape[-1]))
    for start in range(0, dst.shape[0], rows):
        dst_t[start:start + rows].copy_(src_t[start:start + rows])


def _syncfs(path):
    """Write back everything dirty on the filesystem holding ``path`` (Linux syncfs);
    False where unavailable."""
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError):
        return False
    try:
        return libc.syncfs(fd) == 0
    except AttributeError:
        return False
    finally:
        os.close(fd)


class _Video:
    """Metadata of one video (read once) and its files."""

    def __init__(self, num_frames, rows, num_chunks, files):
        self.num_frames, self.rows, self.num_chunks = num_frames, rows, num_chunks
        self.files = files


class MemoryBank:
    """Open with ``MemoryBank.create`` / ``MemoryBank.open`` / ``MemoryBank.copy``."""

    def __init__(self, path, attrs, mode, frozen):
        self.path = Path(path)
        self.mode = mode
        self.frozen = frozen
        self.skipped_writes = 0
        if attrs.get('format') != FORMAT:
            raise BankError(f'{self.path}: not a memory bank (group attribute format='
                            f'{attrs.get("format")!r}, expected {FORMAT!r})')
        version = attrs.get('format_version')
        if version != FORMAT_VERSION:
            hint = ''
            if isinstance(version, int) and version < FORMAT_VERSION:
                hint = (f'; convert it once with `python tools/data/upgrade_bank.py '
                        f'{self.path} NEW_PATH` (or MemoryBank.copy(old, new)) and use '
                        'NEW_PATH')
            raise BankError(f'{self.path}: bank format version {version} is not supported '
                            f'by this vedatad (format version {FORMAT_VERSION}){hint}')
        self.attrs = attrs
        self.feat_dim = int(attrs['feat_dim'])
        self.frames_per_row = int(attrs['frames_per_row'])
        self.frames_per_chunk = int(attrs['frames_per_chunk'])
        self.rows_per_chunk = int(attrs['rows_per_chunk'])
        self.dtype = np.dtype(attrs['dtype'])
        self.backbone = attrs['backbone']
        self._videos = {}                 # video id -> _Video
        self._open_lru = OrderedDict()    # video ids whose descriptors are open
        self._unsynced = []               # files closed while dirty: fsync'ed by flush()
        self._journal = Journal(self.path)
        self._warned_punch = False
        self._scratch = {}  # chunk count -> reused buffer of checked, converted features
        if mode == 'r+' and not frozen:
            step = self._journal.interrupted_rollback()
            if step is not None:
                warnings.warn(f'{self.path}: a rollback to step {step} was interrupted; call '
                              f'rollback_to({step}) again before training', stacklevel=3)

    # ----- creation / opening --------------------------------------------------------------
    @classmethod
    def create(cls, path, feat_dim, backbone, frames_per_row=2, frames_per_chunk=32,
               dtype='float16', config=None, overwrite=False, settings=None):
        """A new empty bank. ``settings``: what determines the features (``settings.py``);
        the bank refuses writers with other settings. ``path`` may exist without a bank in
        it (e.g. holding the writer lock). The group's zarr.json is published last and only
        if absent, so the bank appears complete or not at all, and of two processes
        creating it at once exactly one succeeds."""
        path = Path(path)
        if np.dtype(dtype) not in (np.float16, np.float32):
            raise BankError(f'{path}: dtype must be float16 or float32, got {dtype}')
        if frames_per_chunk % frames_per_row:
            raise BankError(f'{path}: frames_per_chunk {frames_per_chunk} is not a multiple '
                            f'of frames_per_row {frames_per_row}')
        if (path / 'zarr.json').exists() or (path.exists() and not path.is_dir()):
            if not overwrite:
                raise BankError(f'{path}: already exists (open it, or pass overwrite=True)')
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        attrs = dict(format=FORMAT, format_version=FORMAT_VERSION, backbone=str(backbone),
                     feat_dim=int(feat_dim), frames_per_row=int(frames_per_row),
                     frames_per_chunk=int(frames_per_chunk),
                     rows_per_chunk=frames_per_chunk // frames_per_row,
                     dtype=np.dtype(dtype).name, config=_jsonable(config or {}),
                     created=time.strftime('%Y-%m-%dT%H:%M:%S'))
        if settings is not None:
            attrs['settings'] = _jsonable(settings)
        try:
            created = cls._write_group(path, attrs)
        except AtomicWriteError as err:
            raise BankFullError(f'{path}: cannot create the bank: {err}') from err
        if not created:
            raise BankError(f'{path}: another process created a bank here at the same time; '
                            'open it with MemoryBank.open')
        return cls(path, attrs, 'r+', False)

    @staticmethod
    def _write_group(folder, attrs):
        """Write the group metadata, the top-level zarr.json last and only if absent;
        returns False when it already existed."""
        folder = Path(folder)
        for rel in ('feats/zarr.json', 'steps/zarr.json'):
            atomic_write_json(folder / rel, _group_meta(), indent=1, durable=False)
        return publish_new_file(folder / 'zarr.json',
                                json.dumps(_group_meta(attrs), indent=1).encode(),
                                durable=True)

    @staticmethod
    def _temp_sibling(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.with_name(f'.{path.name}.{uuid.uuid4().hex}.{what}')

    @staticmethod
    def _publish_folder(tmp, path, overwrite, what):
        """Rename the finished folder ``tmp`` to ``path``; never merges or half-replaces."""
        if overwrite and path.exists():
            shutil.rmtree(path)
        try:
            os.rename(tmp, path)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise BankError(f'{path}: another process created this bank while this one '
                                f'was {what}; nothing was overwritten (open that bank with '
                                'MemoryBank.open, or use another path)') from None
            raise
        fsync_dir(path.parent)

    @classmethod
    def open(cls, path, mode='r', frozen=False):
        path = Path(path)
        if mode not in ('r', 'r+'):
            raise BankError(f"{path}: mode must be 'r' or 'r+', got {mode!r}")
        attrs = cls.read_attrs(path)
        return cls(path, attrs, mode, frozen)

    @staticmethod
    def read_attrs(path):
        path = Path(path)
        try:
            meta = json.loads((path / 'zarr.json').read_text())
        except FileNotFoundError:
            raise BankError(f'{path}: no memory bank here (zarr.json missing); create one '
                            'with tools/data/extract_features.py') from None
        except ValueError as err:
            raise BankCorruptError(f'{path}/zarr.json: not valid JSON ({err})') from None
        if meta.get('node_type') != 'group':
            raise BankError(f'{path}: not a memory bank (zarr.json is not a group)')
        return meta.get('attributes', {})

    @classmethod
    def copy(cls, src, dst, overwrite=False, frozen=False):
        """Copy a template bank to a working bank (training modifies banks in place).

        The copy is written to a temporary sibling folder renamed into place, so ``dst`` is
        either absent or complete; when another process finishes a copy to ``dst`` first,
        this one raises BankError and leaves that bank alone. Chunks are copied compactly
        (superseded bytes and journals are not), and a bank of an older format version is
        converted. The source's writer lock is neither needed nor copied.
        """
        src, dst = Path(src), Path(dst)
        attrs = cls.read_attrs(src)
        if attrs.get('format') != FORMAT:
            cls(src, attrs, 'r', False)  # raises the 'not a memory bank' error
        holder = read_holder(src)
        if holder and not holder.get('released'):
            warnings.warn(f'{src}: copied while job {holder.get("job_id")} (pid '
                          f'{holder.get("pid")} on {holder.get("host")}) may still be '
                          'writing it; incomplete videos stay incomplete', stacklevel=2)
        if dst.exists() and not overwrite:
            raise BankError(f'{dst}: already exists; not copying {src} over it')
        if attrs.get('format_version') == FORMAT_VERSION:
            source = cls.open(src, 'r')
            videos = source._copy_plan()
        else:
            from .upgrade import v1_videos
            source, videos = None, v1_videos(src, attrs)
        new_attrs = dict(attrs, format_version=FORMAT_VERSION)
        if attrs.get('format_version') != FORMAT_VERSION:
            new_attrs['upgraded_from'] = attrs.get('format_version')
        tmp = cls._temp_sibling(dst, 'copying')
        try:
            target = cls._create_in(tmp, new_attrs)
            for vid, num_frames, complete, read in videos:
                target.add_video(vid, num_frames)
                ids, data, steps = read()
                if len(ids):
                    target._store(target._video(vid), vid, [int(c) for c in ids],
                                  np.ascontiguousarray(data, target.dtype),
                                  [int(x) for x in steps])
                if complete:
                    target.mark_complete(vid, durable=False)
            target.flush()
            target.close()
            cls._publish_folder(tmp, dst, overwrite, f'copying {src} to it')
        except AtomicWriteError as err:
            raise BankFullError(f'{dst}: copy of {src} not written: {err}') from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if source is not None:
                source.close()
        return cls.open(dst, 'r+', frozen=frozen)

    @classmethod
    def _create_in(cls, folder, attrs):
        cls._write_group(folder, attrs)
        return cls(folder, attrs, 'r+', False)

    def _copy_plan(self):
        """[(video, num_frames, complete, read)] where read() -> (stored chunk ids, their
        data, their steps): chunks never written stay absent in the copy."""
        def reader(vid):
            def read():
                video = self._video(vid)
                entries, steps = video.files.snapshot()
                ids = np.flatnonzero(entries[:, 0] != EMPTY)
                data = (self.read_chunks(vid, ids) if len(ids)
                        else np.zeros((0, self.rows_per_chunk, self.feat_dim), self.dtype))
                return ids, data, steps[ids]
            return read
        return [(vid, self.num_frames(vid), self.is_complete(vid), reader(vid))
                for vid in self.video_ids()]

    # ----- settings ------------------------------------------------------------------------
    @property
    def settings(self):
        """What determines the features (``settings.py``); for banks made before settings
        were recorded, what their creation config tells (fewer keys)."""
        if self.attrs.get('settings') is not None:
            return dict(self.attrs['settings'])
        return settings_from_config(self.attrs)

    def settings_differences(self, wanted):
        """[(key, bank value, wanted value)] for every setting that differs."""
        return settings_differences(self.settings, wanted)

    def check_settings(self, wanted, what='this job'):
        """Raise BankError listing every setting of ``wanted`` the bank was not made with."""
        diffs = self.settings_differences(wanted)
        if diffs:
            raise BankError(format_differences(self.path, diffs, what))

    # ----- videos --------------------------------------------------------------------------
    def num_rows_for(self, num_frames):
        return math.ceil(num_frames / self.frames_per_row)

    def _feats_dir(self, video_id):
        return self.path / 'feats' / video_id

    def add_video(self, video_id, num_frames):
        """Create the video's arrays; a no-op when it exists with the same frame count.
        Safe against other processes adding the same video at the same time."""
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
        files = self._files(video_id, chunks)
        where = f'{self.path}: video {video_id}'
        leftover = BankError(f'{where}: files left from an interrupted add_video of another '
                             'length; delete feats/ and steps/ of this video and run again')
        try:
            steps_meta = self.path / 'steps' / video_id / 'zarr.json'
            if not publish_new_file(steps_meta, json.dumps(_steps_meta(chunks)).encode(),
                                    durable=False):
                try:
                    if json.loads(steps_meta.read_text())['shape'] != [chunks]:
                        raise leftover
                except (ValueError, KeyError):
                    raise leftover from None
            for path, initial in ((files.steps_path, files.empty_steps()),
                                  (files.shard_path, files.empty_shard())):
                if not publish_new_file(path, initial, durable=False) \
                        and os.path.getsize(path) < len(initial):
                    raise leftover
            meta = _feats_meta(rows, chunks, self.rows_per_chunk, self.feat_dim,
                               self.dtype.name, num_frames, False)
            # last: its presence means the video exists
            created = publish_new_file(self._feats_dir(video_id) / 'zarr.json',
                                       json.dumps(meta, indent=1).encode(), durable=False)
        except AtomicWriteError as err:
            files.close()
            raise BankFullError(f'{where}: not added: {err}') from err
        if not created:  # another process created it first
            files.close()
            return self._check_frames(video_id, num_frames)
        self._videos[video_id] = _Video(num_frames, rows, chunks, files)

    def _files(self, video_id, num_chunks):
        return VideoFiles(str(self.path), video_id, num_chunks, self.rows_per_chunk,
                          self.feat_dim, self.dtype, writable=self.mode == 'r+')

    def _check_frames(self, video_id, num_frames):
        have = self.num_frames(video_id)
        if have != num_frames:
            raise BankError(f'{self.path}: video {video_id} exists with {have} frames, '
                            f'not {num_frames}')

    def has_video(self, video_id):
        if video_id in self._videos:
            return True
        return (self._feats_dir(str(video_id)) / 'zarr.json').is_file()

    def video_ids(self):
        # a directory listing: zarr's member listing would parse every array's metadata
        folder = self.path / 'feats'
        return sorted(p.name for p in folder.iterdir() if (p / 'zarr.json').is_file())

    def _read_meta(self, video_id):
        path = self._feats_dir(video_id) / 'zarr.json'
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise BankError(f'{self.path}: video {video_id!r} is not in the bank') from None
        except ValueError as err:
            raise BankCorruptError(f'{path}: not valid JSON ({err})') from None

    def _video(self, video_id):
        video = self._videos.get(video_id)
        if video is None:
            if not isinstance(video_id, str):
                raise BankError(f'{self.path}: video id must be a string, got {video_id!r}')
            meta = self._read_meta(video_id)
            _check_layout(self._feats_dir(video_id), meta, self.rows_per_chunk,
                          self.feat_dim, self.dtype.name)
            rows = int(meta['shape'][0])
            chunks = math.ceil(rows / self.rows_per_chunk)
            video = _Video(int(meta['attributes']['num_frames']), rows, chunks,
                           self._files(video_id, chunks))
            self._videos[video_id] = video
        lru = self._open_lru
        if video_id in lru:
            lru.move_to_end(video_id)
        else:
            lru[video_id] = True
            if len(lru) > MAX_OPEN_VIDEOS:  # bound the open descriptors
                old = self._videos[lru.popitem(last=False)[0]].files
                if old.dirty:
                    self._unsynced.append((old.shard_path, old.steps_path))
                old.close()
        return video

    def num_frames(self, video_id):
        return self._video(video_id).num_frames

    def num_rows(self, video_id):
        return self._video(video_id).rows

    def num_chunks(self, video_id):
        return self._video(video_id).num_chunks

    def mark_complete(self, video_id, durable=True):
        """Record that every chunk of the video holds extracted features (made durable
        first: a complete video survives a machine crash)."""
        self._check_writable(video_id, allow_frozen=False)
        self._set_complete(video_id, True, durable)

    def _set_complete(self, video_id, complete, durable=True):
        video = self._video(video_id)
        meta = self._read_meta(video_id)
        if durable:
            video.files.sync()
        meta['attributes']['complete'] = bool(complete)
        try:
            atomic_write_json(self._feats_dir(video_id) / 'zarr.json', meta, indent=1,
                              durable=durable)
        except AtomicWriteError as err:
            raise BankFullError(f'{self.path}: video {video_id}: complete flag not '
                                f'written: {err}') from err

    def is_complete(self, video_id):
        if not self.has_video(video_id):
            return False
        # fresh metadata read: another process may have completed it
        meta = self._read_meta(video_id)
        return bool(meta.get('attributes', {}).get('complete', False))

    # ----- reading / writing ---------------------------------------------------------------
    def _chunk_ids(self, video_id, video, chunk_ids):
        ids = [int(c) for c in chunk_ids]
        if ids and (min(ids) < 0 or max(ids) >= video.num_chunks):
            bad = [c for c in ids if not 0 <= c < video.num_chunks]
            raise BankError(f'{self.path}: video {video_id}: chunk ids {bad} outside '
                            f'[0, {video.num_chunks})')
        return ids

    def read_chunks(self, video_id, chunk_ids, with_steps=False):
        """Whole clip chunks as stored: (len(chunk_ids), rows_per_chunk, C) in the bank's dtype
        (float16 by default, no cast), in request order. Rows of the last chunk past the
        video end are zero. ``with_steps``: also return their step entries ((k,) int64),
        as ``read_steps`` gives them."""
        video = self._video(video_id)
        ids = self._chunk_ids(video_id, video, chunk_ids)
        rpc = self.rows_per_chunk
        out = np.empty((len(ids), rpc, self.feat_dim), self.dtype)
        if ids:
            video.files.read_into(ids, out)
            tail = video.num_chunks * rpc - video.rows  # rows past the video end
            if tail:  # stored as zeros (and zarr pads with the fill value): made sure
                last = video.num_chunks - 1
                for k, cid in enumerate(ids):
                    if cid == last:
                        out[k, rpc - tail:] = 0
        if not with_steps:
            return out
        if not ids:
            return out, np.zeros(0, np.int64)
        lo = min(ids)
        steps = video.files.read_steps(lo, max(ids) + 1)
        return out, steps[[c - lo for c in ids]]

    def read_window(self, video_id, first_chunk, num_chunks):
        """(num_chunks * rows_per_chunk, C) float32; rows past the video end are zero."""
        video = self._video(video_id)
        if first_chunk < 0 or num_chunks < 0:
            raise BankError(f'{self.path}: video {video_id}: negative window '
                            f'({first_chunk}, {num_chunks})')
        rpc = self.rows_per_chunk
        out = np.zeros((num_chunks * rpc, self.feat_dim), dtype=np.float32)
        stop = min(first_chunk + num_chunks, video.num_chunks)
        if stop > first_chunk:
            stored = self.read_chunks(video_id, range(first_chunk, stop))
            _cast_into(out[:stored.shape[0] * rpc], stored.reshape(-1, self.feat_dim))
        return out

    def read_steps(self, video_id, first_chunk, num_chunks):
        """(num_chunks,) int64 last-written steps; -1 for never written or past the end."""
        video = self._video(video_id)
        out = np.full(num_chunks, -1, dtype=np.int64)
        stop = min(first_chunk + num_chunks, video.num_chunks)
        if stop > first_chunk:
            out[:stop - first_chunk] = video.files.read_steps(first_chunk, stop)
        return out

    def write_chunks(self, video_id, chunk_ids, feats, step):
        """Store whole clip chunks of one video.

        chunk_ids: distinct chunk indices; feats: (len * rows_per_chunk, C) or
        (len, rows_per_chunk, C), numpy or torch. Rows of the last chunk past the video end
        are dropped. Returns True when written, False when skipped by a frozen bank.
        On return the chunks are visible to every process; ``flush()`` makes them durable.
        One thread at a time writes through a handle (features are converted in a reused
        buffer); reads may come from several threads and processes.
        """
        if self.mode != 'r+':
            self._check_writable(video_id, allow_frozen=True)
        video = self._video(video_id)
        ids, data = self._validate_write(video_id, chunk_ids, feats, video.num_chunks)
        if self.frozen:
            self.skipped_writes += 1
            return False
        if ids:
            self._store(video, video_id, ids, data, [int(step)] * len(ids))
        return True

    def _store(self, video, video_id, ids, data, steps):
        """Write checked chunks (ids: list of ints; data (k, rows_per_chunk, C) this dtype)."""
        rpc, last = self.rows_per_chunk, video.num_chunks - 1
        if last in ids and (last + 1) * rpc > video.rows:  # rows past the end are not kept
            data = np.array(data)
            data[ids.index(last), video.rows - last * rpc:] = 0
        video.files.write(ids, data, steps, lambda: self._journal.kept_offsets(video_id))
        if video.files.punch_failed and not self._warned_punch:
            self._warned_punch = True
            warnings.warn(f'{self.path}: this filesystem cannot punch holes, so superseded '
                          'chunks are not freed and the bank grows with every write; '
                          'MemoryBank.copy writes a compact copy', stacklevel=3)

    def _validate_write(self, video_id, chunk_ids, feats, num_chunks):
        """(ids as ints, checked features in the bank's dtype (n, rows_per_chunk, C),
        C-contiguous). The array is a scratch buffer reused by the next write of as many
        chunks (one writing thread per handle)."""
        rpc, dim, n = self.rows_per_chunk, self.feat_dim, len(chunk_ids)
        shape = tuple(feats.shape)
        if shape != (n, rpc, dim) and shape != (n * rpc, dim):
            raise BankError(f'{self.path}: video {video_id}: write of {n} chunks needs '
                            f'({n * rpc}, {dim}) or ({n}, {rpc}, {dim}) features, got '
                            f'{shape} (only whole chunks are written)')
        ids = [int(c) for c in chunk_ids]
        if len(set(ids)) != n or min(ids, default=0) < 0 or max(ids, default=0) >= num_chunks:
            bad = [c for c in ids if not 0 <= c < num_chunks]
            what = f'chunk ids {bad} outside [0, {num_chunks})' if bad else \
                f'repeated chunk ids {ids}'
            raise BankError(f'{self.path}: video {video_id}: {what}')
        scratch = self._scratch.get(n)
        if scratch is None:
            stored = np.empty((n, rpc, dim), self.dtype)
            bits = stored.view(np.uint16 if self.dtype == np.float16 else np.uint32)
            scratch = self._scratch[n] = (stored, None, bits, np.empty_like(bits))
        stored, tensor, bits, tmp = scratch
        if hasattr(feats, 'detach'):  # torch tensor, possibly on GPU / in another dtype
            if tensor is None:
                import torch
                tensor = torch.from_numpy(stored)
                self._scratch[n] = (stored, tensor, bits, tmp)
            tensor.copy_(feats.detach().reshape(n, rpc, dim))
        elif getattr(feats, 'dtype', None) == self.dtype:
            stored[...] = feats.reshape(n, rpc, dim)
        else:
            _cast_into(stored.reshape(-1, dim), np.asarray(feats, np.float32).reshape(-1, dim))
        # no inf / NaN (after the cast: values beyond float16 became inf); an exponent test
        # on the bits is much faster than isfinite on small arrays
        exponent = 0x7C00 if self.dtype == np.float16 else 0x7F800000
        if n and int(np.bitwise_and(bits, exponent, out=tmp).max()) >= exponent:
            raise BankError(f'{self.path}: video {video_id}: refusing to store non-finite '
                            f'features in chunks {ids}')
        return ids, stored

    def _check_writable(self, video_id, allow_frozen):
        if self.mode == 'r':
            raise BankReadOnlyError(f'{self.path}: opened read-only; cannot write video '
                                    f'{video_id}')
        if self.frozen and not allow_frozen:
            raise BankReadOnlyError(f'{self.path}: frozen bank; cannot modify video '
                                    f'{video_id}')

    # ----- durability, consistent points, space --------------------------------------------
    def flush(self, everything=False):
        """Make every write of this process durable (on disk). Writes are visible to all
        processes as soon as ``write_chunks`` returns; flush before saving a checkpoint
        (``mark_consistent`` does) so that a machine crash cannot lose them.
        ``everything``: also what other processes wrote (the whole filesystem is synced).
        A few files are fsync'ed one by one; many at once with one ``syncfs`` (one journal
        commit instead of one per file)."""
        dirty = [v.files for v in self._videos.values() if v.files.dirty]
        if everything or len(dirty) + len(self._unsynced) > 4:
            if _syncfs(self.path):
                for files in dirty:
                    files.dirty = False
                self._unsynced = []
                return
        for files in dirty:
            files.sync()
        for paths in self._unsynced:
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self._unsynced = []

    def collect_garbage(self):
        """Free the disk space of superseded chunk bytes in every video (writers do this
        on their own as they go); returns the bytes released."""
        self._check_writable('(all)', allow_frozen=False)
        total = 0
        for vid in self.video_ids():
            released = self._video(vid).files.collect_garbage_locked(
                lambda v=vid: self._journal.kept_offsets(v))
            total += released or 0
        return total

    def journal_steps(self):
        """Steps that ``rollback_to`` can restore, ascending."""
        return self._journal.steps()

    def mark_consistent(self, step, keep=2):
        """Record the current state as the one of training step ``step`` (see
        ``journal.py``): ``rollback_to(step)`` restores it bit for bit. Call it when every
        process has flushed its writes (e.g. all ranks ``flush()``, barrier, one rank marks)
        and the checkpoint of ``step`` is saved. Keeps the ``keep`` most recent records."""
        self._check_writable('(all)', allow_frozen=False)
        if keep < 1:
            raise BankError(f'{self.path}: mark_consistent keep must be >= 1, got {keep}')
        videos = self.video_ids()
        if not _syncfs(self.path):  # 1. the recorded state is on disk, whoever wrote it
            for vid in videos:
                self._video(vid).files.sync(force=True)
        self.flush()
        marker = self._journal.begin_mark(step)  # 2. garbage collection pauses
        try:
            record = []
            for vid in videos:  # 3.
                entries, steps = self._video(vid).files.snapshot()
                record.append((vid, entries, steps, self.is_complete(vid),
                               self.num_frames(vid)))
            self._journal.write(step, record)
        except AtomicWriteError as err:
            raise BankFullError(f'{self.path}: journal of step {step} not written: {err}') \
                from err
        finally:
            marker.unlink(missing_ok=True)
        others = [s for s in self._journal.steps() if s != int(step)]  # 4.
        self._journal.drop(others[max(0, len(others) - (keep - 1)):] + [int(step)])
        self.collect_garbage()

    def rollback_to(self, step):
        """Restore the state recorded by ``mark_consistent(step)``: every chunk written
        since then gets its recorded bytes and step entry back (or is absent again), complete
        flags are restored, videos added since are removed; other journals are dropped.
        No other process may use the bank meanwhile (call it before training starts)."""
        self._check_writable('(all)', allow_frozen=False)
        record = self._journal.load(step)
        missing = sorted(set(record) - set(self.video_ids()))
        if missing:
            raise BankError(f'{self.path}: cannot roll back to step {step}: videos {missing} '
                            'were removed from the bank after that mark')
        self._journal.begin_rollback(step)  # 1.
        for vid in self.video_ids():  # 2.
            if vid not in record:
                self._remove_video(vid)
                continue
            entries, steps, complete, num_frames = record[vid]
            video = self._video(vid)
            if video.num_frames != num_frames:
                raise BankError(f'{self.path}: video {vid} has {video.num_frames} frames, '
                                f'the journal of step {step} {num_frames}')
            video.files.restore(entries, steps)
            if self.is_complete(vid) != complete:
                self._set_complete(vid, complete)
        self.flush()  # 3.
        self._journal.drop([step])
        self._journal.end_rollback()

    def _remove_video(self, video_id):
        video = self._videos.pop(video_id, None)
        if video is not None:
            video.files.close()
        self._open_lru.pop(video_id, None)
        (self._feats_dir(video_id) / 'zarr.json').unlink(missing_ok=True)  # gone first
        shutil.rmtree(self._feats_dir(video_id), ignore_errors=True)
        shutil.rmtree(self.path / 'steps' / video_id, ignore_errors=True)

    def close(self):
        """Close the file descriptors (reopened on the next access)."""
        for video in self._videos.values():
            if video.files.dirty:
                self._unsynced.append((video.files.shard_path, video.files.steps_path))
            video.files.close()
        self._open_lru.clear()

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
