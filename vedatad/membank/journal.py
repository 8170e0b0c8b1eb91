"""Consistent points of a bank, for resuming training after a crash.

``MemoryBank.mark_consistent(step)`` records, for every video, where each chunk's bytes are
(the shard's index entries), its step entry and its complete flag, in
``BANK/journal/step_<step>.npz``. Chunk bytes are never overwritten (``shard.py`` appends
every write), and garbage collection keeps every slot a journal references, so this small
record is a full pre-image of every chunk: ``rollback_to(step)`` points the chunks back at
it, restoring features, steps and flags bit for bit. A chunk that was never written is
recorded as absent and is absent again after the rollback. Several ranks writing chunks
in between do not matter: what is restored is the state recorded at the mark, whoever
wrote after it.

Order of operations (a crash at any point leaves a usable bank):

mark_consistent(step)
  1. fsync every video's files (the state being recorded is on disk);
  2. create ``journal/mark_<step>.<host>.<pid>.pending``: garbage collection pauses, so no
     slot recorded in step 3 can be freed before the record exists;
  3. read every video's index and steps under its lock, write the record to a temporary
     file, fsync, rename it to ``step_<step>.npz`` (present = complete);
  4. remove the pending marker, then the oldest records beyond ``keep``, then collect
     garbage (slots only dropped records referenced are freed).
  A crash leaves at most a stale pending marker, which the next mark or rollback removes
  (garbage collection also ignores markers of dead processes on this host).

rollback_to(step)  (no other process may use the bank meanwhile: call it before training)
  1. write ``journal/rollback.pending`` naming the step;
  2. per video, under its lock: overwrite index and step entries from the record, restore
     the complete flag; videos created after the mark are removed;
  3. fsync, drop every other record, remove the marker.
  Each step is idempotent: after a crash, ``open`` warns and calling ``rollback_to(step)``
  again finishes the job.
"""
import io
import os
import shutil
import socket
from pathlib import Path

import numpy as np

from ..utils.io import atomic_write_bytes, atomic_write_text, fsync_dir
from .errors import BankError

JOURNAL_DIR = 'journal'
ROLLBACK_MARKER = 'rollback.pending'


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Journal:
    """The journal folder of one bank; caches what garbage collection needs."""

    def __init__(self, bank_path):
        self.bank_path = Path(bank_path)
        self.folder = self.bank_path / JOURNAL_DIR
        self._cache = {}  # record file name -> (mtime_ns, {video: offsets})

    # ----- records -----------------------------------------------------------------------
    def path(self, step):
        return self.folder / f'step_{int(step)}.npz'

    def steps(self):
        """Steps that have a complete record, ascending."""
        out = []
        for name in self._listing():
            if name.startswith('step_') and name.endswith('.npz'):
                try:
                    out.append(int(name[5:-4]))
                except ValueError:
                    pass
        return sorted(out)

    def _listing(self):
        try:
            return os.listdir(self.folder)
        except FileNotFoundError:
            return []

    def write(self, step, videos):
        """videos: [(video id, entries (n, 2) uint64, steps (n,) int64, complete,
        num_frames)] -> the record, published atomically (fsync'ed)."""
        ids = [v[0] for v in videos]
        counts = np.array([len(v[2]) for v in videos], np.int64)
        buf = io.BytesIO()
        np.savez(buf, step=np.int64(step), video_ids=np.array(ids, dtype=str),
                 counts=counts,
                 entries=np.concatenate([v[1] for v in videos]) if videos
                 else np.zeros((0, 2), np.uint64),
                 steps=np.concatenate([v[2] for v in videos]) if videos
                 else np.zeros(0, np.int64),
                 complete=np.array([bool(v[3]) for v in videos], bool),
                 num_frames=np.array([int(v[4]) for v in videos], np.int64))
        atomic_write_bytes(self.path(step), buf.getvalue(), durable=True)

    def load(self, step):
        """{video id: (entries, steps, complete, num_frames)} of one record."""
        path = self.path(step)
        if not path.is_file():
            have = self.steps()
            raise BankError(
                f'{self.bank_path}: no journal for step {step} (journals exist for steps '
                f'{have or "none"}). A journal is written by mark_consistent(step) and only '
                'the most recent ones are kept, so the bank cannot be brought back to step '
                f'{step}: resume from a checkpoint whose step has a journal, or start over '
                'from a fresh copy of the template bank.')
        with np.load(path, allow_pickle=False) as z:
            ids, counts = z['video_ids'].tolist(), z['counts']
            entries, steps = z['entries'], z['steps']
            complete, frames = z['complete'], z['num_frames']
        out, pos = {}, 0
        for k, vid in enumerate(ids):
            n = int(counts[k])
            out[vid] = (entries[pos:pos + n], steps[pos:pos + n], bool(complete[k]),
                        int(frames[k]))
            pos += n
        return out

    def drop(self, keep_steps):
        """Remove every record whose step is not in ``keep_steps``."""
        keep = {int(s) for s in keep_steps}
        for step in self.steps():
            if step not in keep:
                self.path(step).unlink(missing_ok=True)
        self._cache = {}

    # ----- markers -----------------------------------------------------------------------
    def begin_mark(self, step):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.clear_stale_markers()
        marker = self.folder / f'mark_{int(step)}.{socket.gethostname()}.{os.getpid()}.pending'
        atomic_write_text(marker, '', durable=True)
        return marker

    def clear_stale_markers(self):
        for name in self._listing():
            if name.startswith('mark_') and name.endswith('.pending'):
                (self.folder / name).unlink(missing_ok=True)

    def _mark_in_progress(self, names):
        host = socket.gethostname()
        for name in names:
            if not (name.startswith('mark_') and name.endswith('.pending')):
                continue
            parts = name[:-len('.pending')].split('.')
            try:
                marker_host, pid = '.'.join(parts[1:-1]), int(parts[-1])
            except (ValueError, IndexError):
                return True
            if marker_host != host or _pid_alive(pid):
                return True
        return False

    def begin_rollback(self, step):
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / ROLLBACK_MARKER, str(int(step)), durable=True)

    def end_rollback(self):
        (self.folder / ROLLBACK_MARKER).unlink(missing_ok=True)
        fsync_dir(self.folder)

    def interrupted_rollback(self):
        """The step of a rollback that did not finish, or None."""
        try:
            return int((self.folder / ROLLBACK_MARKER).read_text() or -1)
        except (FileNotFoundError, ValueError):
            return None

    # ----- what garbage collection keeps -------------------------------------------------
    def kept_offsets(self, video_id):
        """Slot offsets of ``video_id`` that some record references; None while a mark is
        being written (garbage collection must wait)."""
        names = self._listing()
        if self._mark_in_progress(names):
            return None
        kept = set()
        for name in names:
            if not (name.startswith('step_') and name.endswith('.npz')):
                continue
            path = self.folder / name
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            cached = self._cache.get(name)
            if cached is None or cached[0] != mtime:
                try:
                    record = self.load(int(name[5:-4]))
                except (BankError, ValueError, OSError):
                    return None  # unreadable right now: keep everything
                cached = (mtime, {vid: set(int(o) for o in e[:, 0] if o != 2**64 - 1)
                                  for vid, (e, *_rest) in record.items()})
                self._cache[name] = cached
            kept |= cached[1].get(video_id, set())
        return kept

    def remove_all(self):
        shutil.rmtree(self.folder, ignore_errors=True)
