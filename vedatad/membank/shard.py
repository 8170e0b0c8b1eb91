"""One video's files in a memory bank: the feature shard and the step counters.

Both are ordinary zarr v3 chunks (zarr reads them; tests check it)::

    feats/<video>/c/0/0   one shard (zarr ``sharding_indexed`` codec, index at the start)
                          holding every clip chunk of the video: num_chunks (offset, nbytes)
                          uint64 index entries, then chunk slots of rows_per_chunk x C values
                          followed by their crc32c
    steps/<video>/c/0     num_chunks int64: the training step that last wrote each chunk

Writes never touch bytes a reader may be using. Order of operations of one write:

1. take the shard's exclusive ``flock`` (writers of one video and the garbage collector take
   turns, for a few tens of microseconds; readers never lock);
2. append the new slots at the end of the shard (``pwritev``, continued after short
   writes); on any error the file is truncated back and nothing else changes, so every
   chunk still reads as before (a full disk raises ``BankFullError``);
3. overwrite the chunks' 16-byte index entries in place (aligned ``pwrite``): from now on
   readers get the new chunks, each one whole;
4. overwrite the chunks' 8-byte step entries in place;
5. release the lock.

A crash before 3 leaves the old chunks (and unreferenced bytes that garbage collection
frees), between 3 and 4 new features with the older step (staleness over-estimated, never
wrong features). A reader reads the index entries, copies the slots out of a shared mapping
of the shard (no system call per chunk; pread where files cannot be mapped), then reads the
entries again and rereads any chunk whose entry changed meanwhile. Every slot is checked
against its crc32c the first time a reader handle meets it (a slot never changes while an
entry points at it), so stale or damaged bytes (NFS caches, a machine crash before
``flush``) raise ``BankCorruptError`` instead of reaching training.

Superseded slots are garbage: once about one video's worth has been appended, the writer
punches holes over every slot that no index entry and no journal snapshot
(``journal.py``) references (``fallocate(PUNCH_HOLE)``: disk blocks freed, offsets of live
slots unchanged). A reader that still holds an old entry notices the changed entry and
rereads, so punching is safe without reader locks.
"""
import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import struct
import warnings
import weakref

import google_crc32c
import numpy as np

from ..utils.io import DISK_FULL_ERRNOS, disk_full_hint, publish_new_file, write_all
from .errors import BankCorruptError, BankError, BankFullError

EMPTY = 2**64 - 1  # zarr's index value of a chunk that was never written
ENTRY_BYTES = 16
STEP_BYTES = 8
CRC_BYTES = 4
IOV_MAX = 512          # buffers per preadv / pwritev call (the Linux limit is 1024)
OPTIMISTIC_READS = 8   # unlocked attempts before a read takes the shared lock
MIN_PUNCH = 4096       # smaller gaps free no disk block

_OPEN_FILES = weakref.WeakSet()


def _forget_inherited():
    """A forked child (DataLoader worker) must not share descriptors, hence locks."""
    for files in list(_OPEN_FILES):
        files.forget_descriptors()


os.register_at_fork(after_in_child=_forget_inherited)

_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_libc = None


def punch_hole(fd, offset, length):
    """Free the disk blocks of [offset, offset + length) (they read as zeros).
    Returns False where the filesystem cannot do it."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length):
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise OSError(err, os.strerror(err))
    return True


class _PreadBytes:
    """file[a:b] through pread, where a file cannot be mapped."""

    def __init__(self, fd):
        self.fd = fd

    def __getitem__(self, span):
        return os.pread(self.fd, span.stop - span.start, span.start)


class _Mapping:
    """A read-only shared mapping of a file, possibly longer than the file (the tail is
    never touched: every access is checked against the file size first, so it cannot
    fault). Reads through it copy chunk bytes with no system call."""

    _libc = None

    def __init__(self, fd, length):
        libc = _Mapping._libc
        if libc is None:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_int64]
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            _Mapping._libc = libc
        page = mmap.PAGESIZE
        self.length = -(-length // page) * page
        addr = libc.mmap(None, self.length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.addr = addr
        self.bytes = memoryview((ctypes.c_uint8 * self.length).from_address(addr)).cast('B')

    def close(self):
        if self.addr is not None:
            self.bytes.release()  # views never outlive a read: nothing refers to the pages
            _Mapping._libc.munmap(self.addr, self.length)
            self.addr = None


_LOCKS_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
_lock_warning = []


def flock(fd, operation):
    """fcntl.flock, or nothing (with one warning) on filesystems without locks."""
    try:
        fcntl.flock(fd, operation)
    except OSError as err:
        if err.errno not in _LOCKS_UNSUPPORTED:
            raise
        if not _lock_warning:
            _lock_warning.append(True)
            warnings.warn('this filesystem does not support file locks: only one process may '
                          'write each video of a memory bank at a time', stacklevel=3)


def pwritev_all(fd, buffers, offset, total):
    """Write all ``buffers`` (``total`` bytes) contiguously at ``offset``, continuing after
    short writes (the kernel reports a full disk as a short write, then an error)."""
    if len(buffers) <= IOV_MAX:
        n = os.pwritev(fd, buffers, offset)
        if n == total:
            return total  # the usual case: one call
    else:
        n = 0
    views = [memoryview(b).cast('B') for b in buffers]
    pos = offset
    while views:
        if n == 0:
            n = os.pwritev(fd, views[:IOV_MAX], pos)
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        pos += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]
            n = 0
    return pos - offset


def _runs(sorted_ids):
    """Consecutive runs of sorted ints: [(first, count)]."""
    runs = []
    for cid in sorted_ids:
        if runs and runs[-1][0] + runs[-1][1] == cid:
            runs[-1][1] += 1
        else:
            runs.append([cid, 1])
    return runs


class VideoFiles:
    """The shard and steps files of one video, with descriptors kept open."""

    can_punch = True  # cleared (with a warning by the bank) on filesystems without it
    can_map = True    # cleared where mmap fails

    def __init__(self, bank_path, video_id, num_chunks, rows_per_chunk, feat_dim, dtype,
                 writable):
        self.where = f'{bank_path}: video {video_id}'
        self.shard_path = os.path.join(bank_path, 'feats', video_id, 'c', '0', '0')
        self.steps_path = os.path.join(bank_path, 'steps', video_id, 'c', '0')
        self.num_chunks = int(num_chunks)
        self.chunk_shape = (int(rows_per_chunk), int(feat_dim))
        self.dtype = np.dtype(dtype).newbyteorder('<')
        self.chunk_bytes = rows_per_chunk * feat_dim * self.dtype.itemsize
        self.slot_bytes = self.chunk_bytes + CRC_BYTES
        self.index_bytes = ENTRY_BYTES * self.num_chunks
        self.writable = writable
        self.dirty = False            # written since the last sync()
        self.appended_since_gc = 0    # bytes this process appended since it last collected
        self.punch_failed = False
        self._shard = None
        self._steps = None
        self._map = None  # _Mapping of the shard, for reads
        self._retired = []  # earlier mappings (the file grew), unmapped by close()
        # Slots whose crc32c this process has checked. A slot's bytes never change once its
        # entry points at it (writes append; garbage collection only frees unreferenced
        # slots), so one check per slot and process is enough.
        self._verified = set()
        self.checks = self.check_hits = 0  # crc checks needed / spared (statistics)
        _OPEN_FILES.add(self)

    # ----- initial contents ------------------------------------------------------------------
    def empty_shard(self):
        return b'\xff' * self.index_bytes

    def empty_steps(self):
        return np.full(self.num_chunks, -1, '<i8').tobytes()

    # ----- descriptors -----------------------------------------------------------------------
    def _open(self, path, initial):
        flags = os.O_RDWR if self.writable else os.O_RDONLY
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            if not self.writable:
                return None  # never stored (zarr drops all-fill chunks): the fill value
        try:
            publish_new_file(path, initial(), durable=False)
        except OSError as err:
            raise self._error(err, f'cannot create {path}') from err
        return os.open(path, flags)

    def shard(self):
        """(fd, stat) of the shard, reopened if the file was replaced; (None, None) if it
        does not exist (a bank opened read-only)."""
        fd = self._shard
        if fd is not None:
            st = os.fstat(fd)
            if st.st_nlink:
                return fd, st
            self._close_shard()  # replaced by a rename (e.g. zarr rewrote it): reopen
        fd = self._open(self.shard_path, self.empty_shard)
        if fd is None:
            return None, None
        self._shard = fd
        return fd, os.fstat(fd)

    def steps(self):
        fd = self._steps
        if fd is not None and os.fstat(fd).st_nlink:
            return fd
        if fd is not None:
            os.close(fd)
        self._steps = self._open(self.steps_path, self.empty_steps)
        return self._steps

    def _close_shard(self):
        self._verified = set()
        self._retire_map()
        if self._shard is not None:
            os.close(self._shard)
            self._shard = None

    def _retire_map(self):
        """Stop using the current mapping. It is unmapped only by close(): another thread
        of this process may still be copying from it."""
        if self._map is not None:
            self._retired.append(self._map)
            self._map = None

    def _unmap_all(self):
        for mapping in self._retired + ([self._map] if self._map is not None else []):
            try:
                mapping.close()
            except BufferError:  # still in use by another thread: leave it mapped
                pass
        self._map, self._retired = None, []

    def _mapped(self, fd, size):
        """The shard's mapping, covering at least ``size`` bytes (remapped as it grows);
        None on filesystems that cannot map files (reads then use pread)."""
        if self._map is None or self._map.length < size:
            self._retire_map()
            if VideoFiles.can_map:
                try:
                    self._map = _Mapping(fd, 2 * size + (64 << 20))
                except OSError:
                    VideoFiles.can_map = False
        return self._map.bytes if self._map is not None else _PreadBytes(fd)

    def close(self):
        self._close_shard()
        self._unmap_all()
        if self._steps is not None:
            os.close(self._steps)
            self._steps = None

    def forget_descriptors(self):
        """In a forked child (one thread): drop the inherited mappings and descriptors (the
        parent keeps its own)."""
        self._unmap_all()
        for fd in (self._shard, self._steps):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._shard = self._steps = None

    def _error(self, err, what, chunk_ids=None):
        chunks = f' chunks {list(chunk_ids)}' if chunk_ids is not None else ''
        if getattr(err, 'errno', None) in DISK_FULL_ERRNOS:
            return BankFullError(f'{self.where}{chunks}: {what}: the disk is full '
                                 f'({os.strerror(err.errno)}); nothing was changed, the '
                                 'previous contents are intact. Free space on that '
                                 'filesystem (or move the bank) and run the same command '
                                 'again.')
        return BankError(f'{self.where}{chunks}: {what}: {err}{disk_full_hint(err)}')

    # ----- index -----------------------------------------------------------------------------
    def _raw_entries(self, fd, first, stop):
        """Raw bytes of index entries [first, stop), or None if the file is too short."""
        want = ENTRY_BYTES * (stop - first)
        raw = os.pread(fd, want, ENTRY_BYTES * first)
        return raw if len(raw) == want else None

    def _entries(self, fd, first, stop):
        """Index entries [first, stop) as uint64 (n, 2): offset, nbytes."""
        raw = self._raw_entries(fd, first, stop)
        return None if raw is None else np.frombuffer(raw, '<u8').reshape(-1, 2)

    # ----- reads -----------------------------------------------------------------------------
    def read_into(self, ids, out):
        """out[k] = chunk ids[k] (ids: list of ints); out: (len(ids), rows_per_chunk, C)
        C-contiguous, this dtype. Never-written chunks read as zeros (the fill value)."""
        lo, hi = min(ids), max(ids) + 1
        changed, reopened = 0, False
        while True:
            fd, st = self.shard()
            if fd is None:
                out[...] = 0
                return
            locked = changed >= OPTIMISTIC_READS  # writers keep replacing these chunks
            if locked:
                flock(fd, fcntl.LOCK_SH)  # excludes writers and garbage collection
            try:
                raw = self._raw_entries(fd, lo, hi)
                if raw is None:
                    problem = f'index shorter than {self.num_chunks} entries'
                else:
                    problem = self._read_slots(fd, st.st_size, ids, lo, raw, out)
                    if not locked and os.pread(fd, len(raw), ENTRY_BYTES * lo) != raw:
                        changed += 1  # rewritten while read: read again
                        continue
            finally:
                if locked:
                    flock(fd, fcntl.LOCK_UN)
            if problem is None:
                return
            if reopened:
                break
            reopened = True  # one more try on a freshly opened file (NFS caches)
            self._close_shard()
        raise BankCorruptError(
            f'{self.where}: {problem} in {self.shard_path}. The bank is damaged (a machine '
            'crash before MemoryBank.flush(), or a write by another tool): roll it back to '
            'the last consistent step (MemoryBank.rollback_to), copy the template bank '
            'again, or re-extract this video.')

    def _read_slots(self, fd, file_size, ids, lo, raw, out):
        """Copy the slots that raw index entries [lo, ...) give for ``ids`` into ``out``
        (from the shard's mapping: no system call per chunk) and check their crc32c;
        returns None or what is wrong. (The hot path of training: kept lean.)"""
        entries = struct.unpack(f'<{len(raw) // 8}Q', raw)
        slot, chunk = self.slot_bytes, self.chunk_bytes
        low, high = self.index_bytes, file_size - slot
        mapped = self._mapped(fd, file_size)
        verified = self._verified
        flat = out.reshape(-1).view(np.uint8)
        dst = memoryview(flat)
        stored, pos = [], 0
        for k, cid in enumerate(ids):
            j = 2 * (cid - lo)
            off, nb = entries[j], entries[j + 1]
            if off == EMPTY and nb == EMPTY:
                dst[pos:pos + chunk] = bytes(chunk)  # never written: the fill value
            elif nb != slot or not low <= off <= high:
                return (f'chunk {cid} index entry (offset {off}, {nb} bytes) does not '
                        f'point at a {slot}-byte slot inside the file ({file_size} bytes)')
            else:
                dst[pos:pos + chunk] = mapped[off:off + chunk]
                if off not in verified:
                    stored.append((k, off, int.from_bytes(mapped[off + chunk:off + slot],
                                                          'little')))
            pos += chunk
        dst.release()
        self.checks += len(stored)
        self.check_hits += len(ids) - len(stored)
        if not stored:
            return None
        readable = flat.reshape(len(ids), chunk)
        readable.flags.writeable = False  # google_crc32c wants a read-only buffer
        value = google_crc32c.value
        for k, off, crc in stored:
            if value(readable[k]) != crc:
                return f'chunk {ids[k]} fails its crc32c checksum'
        if len(verified) > 8 * self.num_chunks + 64:
            verified.clear()  # bounded: offsets of superseded slots pile up otherwise
        verified.update(off for _, off, _ in stored)
        return None

    def read_steps(self, first, stop):
        """(stop - first,) int64 step entries; -1 for chunks never written by training."""
        fd = self.steps()
        if fd is None:
            return np.full(stop - first, -1, np.int64)
        want = STEP_BYTES * (stop - first)
        raw = os.pread(fd, want, STEP_BYTES * first)
        if len(raw) != want:
            raise BankCorruptError(f'{self.where}: {self.steps_path} holds {len(raw)} bytes '
                                   f'at entry {first}, expected {want}')
        return np.frombuffer(raw, '<i8').astype(np.int64)

    # ----- writes ----------------------------------------------------------------------------
    def write(self, ids, data, steps, kept_by_journals):
        """Store chunks ``ids`` (list of ints; data: (k, rows_per_chunk, C) this dtype,
        C-contiguous) with per-chunk ``steps`` (k ints). ``kept_by_journals()``: offsets
        that garbage collection must keep, or None when it must not run now."""
        k = len(ids)
        flat = data.reshape(k, -1).view(np.uint8)
        readable = flat.view()
        readable.flags.writeable = False
        bufs = []
        for j in range(k):
            row = readable[j]
            bufs += (row, struct.pack('<I', google_crc32c.value(row)))
        while True:
            fd = self._shard
            if fd is None:
                fd, _ = self.shard()
            flock(fd, fcntl.LOCK_EX)
            try:
                st = os.fstat(fd)
                if not st.st_nlink:  # replaced (e.g. rewritten by zarr): reopen
                    self._close_shard()
                    continue
                self._append_and_point(fd, st.st_size, ids, bufs, steps)
                if self.appended_since_gc > max(self.num_chunks, 8) * self.slot_bytes:
                    self.collect_garbage(fd, kept_by_journals)
                return
            finally:
                if self._shard == fd:
                    flock(fd, fcntl.LOCK_UN)

    def _append_and_point(self, fd, end, ids, bufs, steps):
        k = len(ids)
        try:
            pwritev_all(fd, bufs, end, k * self.slot_bytes)
        except OSError as err:
            try:
                os.ftruncate(fd, end)  # we hold the lock: nobody appended after `end`
            except OSError:
                pass  # the tail is unreferenced garbage either way
            raise self._error(err, 'chunks not written', ids) from err
        self.dirty = True
        self.appended_since_gc += k * self.slot_bytes
        slot = self.slot_bytes
        try:
            self._put(fd, ids, [struct.pack('<QQ', end + j * slot, slot) for j in range(k)],
                      ENTRY_BYTES)
        except OSError as err:
            raise self._error(err, 'index update failed (each chunk is old or new)', ids) \
                from err
        try:
            self._put(self.steps(), ids, [struct.pack('<q', s) for s in steps], STEP_BYTES)
        except OSError as err:
            raise self._error(err, 'step entries not updated (features are new; their '
                              'staleness is over-estimated)', ids) from err

    @staticmethod
    def _put(fd, ids, values, entry_bytes):
        """values[j] (bytes) -> entry ids[j], one pwrite per run of consecutive ids."""
        if len(ids) <= 2 and (len(ids) == 1 or abs(ids[0] - ids[1]) != 1):
            for cid, value in zip(ids, values):  # the training case: no run to merge
                if os.pwrite(fd, value, cid * entry_bytes) != len(value):
                    write_all(fd, value, cid * entry_bytes)
            return
        order = sorted(range(len(ids)), key=ids.__getitem__)
        pos = 0
        for first, count in _runs([ids[j] for j in order]):
            write_all(fd, b''.join(values[j] for j in order[pos:pos + count]),
                      first * entry_bytes)
            pos += count

    # ----- garbage collection ----------------------------------------------------------------
    def collect_garbage(self, fd, kept_by_journals):
        """Punch holes over unreferenced slots (call with the exclusive lock held).
        Returns the bytes released, or None when skipped."""
        kept = kept_by_journals()
        if kept is None or not VideoFiles.can_punch:
            return None
        entries = self._entries(fd, 0, self.num_chunks)
        if entries is None:
            return None
        live = set(int(o) for o in entries[:, 0] if o != EMPTY) | set(kept)
        size = os.fstat(fd).st_size
        cursor, released = self.index_bytes, 0
        for off in sorted(live) + [size]:
            if off - cursor >= MIN_PUNCH:
                if not punch_hole(fd, cursor, off - cursor):
                    VideoFiles.can_punch = False
                    self.punch_failed = True
                    return None
                released += off - cursor
            cursor = max(cursor, off + self.slot_bytes)
        self.appended_since_gc = 0
        return released

    def collect_garbage_locked(self, kept_by_journals):
        if not self.writable:
            return None
        fd, _ = self.shard()
        flock(fd, fcntl.LOCK_EX)
        try:
            return self.collect_garbage(fd, kept_by_journals)
        finally:
            flock(fd, fcntl.LOCK_UN)

    # ----- whole-video state (journal snapshots, rollback, copies) ---------------------------
    def snapshot(self):
        """(index entries (n, 2) uint64, steps (n,) int64), read under the lock so that no
        write is half-way between its index and its step entries."""
        fd, _ = self.shard()
        if fd is None:
            return (np.full((self.num_chunks, 2), EMPTY, np.uint64),
                    self.read_steps(0, self.num_chunks))
        flock(fd, fcntl.LOCK_EX if self.writable else fcntl.LOCK_SH)
        try:
            entries = self._entries(fd, 0, self.num_chunks)
            if entries is None:
                raise BankCorruptError(f'{self.where}: {self.shard_path} is shorter than '
                                       'its index')
            return entries.astype(np.uint64), self.read_steps(0, self.num_chunks)
        finally:
            flock(fd, fcntl.LOCK_UN)

    def restore(self, entries, steps):
        """Point every chunk back at ``entries`` and set ``steps`` (rollback)."""
        fd, _ = self.shard()
        flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            stored = entries[:, 0] != EMPTY
            if (entries[stored, 0] + entries[stored, 1] > size).any():
                raise BankCorruptError(f'{self.where}: the journal points past the end of '
                                       f'{self.shard_path}')
            try:
                write_all(fd, np.ascontiguousarray(entries, '<u8').tobytes(), 0)
                write_all(self.steps(), np.ascontiguousarray(steps, '<i8').tobytes(), 0)
            except OSError as err:
                raise self._error(err, 'rollback write failed (run rollback_to again)') \
                    from err
            self.dirty = True
        finally:
            flock(fd, fcntl.LOCK_UN)

    def sync(self, force=False):
        """fsync both files if this process wrote them since the last sync (``force``:
        in any case, e.g. to make other processes' writes durable too)."""
        if force and self.writable:
            self.shard()
            self.steps()
        elif not self.dirty:
            return
        for fd in (self._shard, self._steps):
            if fd is not None:
                os.fsync(fd)
        self.dirty = False
