"""One writing job per bank: ``BANK/.lock`` names the holder while it runs.

The file is held with an exclusive ``flock`` for the job's life, and holds JSON naming the
holder (host, pid, start time, command, job id). The kernel drops the flock when the holder
dies, however it dies, so a lock left by a dead job is taken over (with a warning naming
it) and a live one is refused with its name. The ranks of one distributed job share the
lock: rank 0 takes it, the others check that it names their job id. Training never takes
it (it writes a working copy of the bank), and ``MemoryBank.copy`` does not copy it.
"""
import errno
import fcntl
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from ..utils.io import write_all
from .errors import BankLockedError

LOCK_FILE = '.lock'


def new_job_id():
    return f'{socket.gethostname()}:{os.getpid()}:{time.time_ns()}'


def _describe(info):
    if not info:
        return 'an unnamed process'
    return (f"host {info.get('host')}, pid {info.get('pid')}, started {info.get('started')}, "
            f"command {info.get('command')!r} (job {info.get('job_id')})")


def read_holder(bank_path):
    """The JSON in ``BANK/.lock`` (the current or last holder), or None."""
    try:
        text = (Path(bank_path) / LOCK_FILE).read_text()
        return json.loads(text) if text.strip() else None
    except (FileNotFoundError, ValueError):
        return None


class BankLock:
    """``with BankLock(path, job_id): ...`` or ``acquire()`` / ``release()``."""

    def __init__(self, bank_path, job_id=None, command=None):
        self.bank_path = Path(bank_path)
        self.path = self.bank_path / LOCK_FILE
        self.job_id = job_id or new_job_id()
        self.command = command or ' '.join(sys.argv)
        self._fd = None

    def acquire(self):
        self.bank_path.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise BankLockedError(
                    f'{self.bank_path}: another job is writing this bank: '
                    f'{_describe(read_holder(self.bank_path))}. Wait for it to finish (or '
                    'stop it), or use another bank path.') from None
            except OSError as err:  # a filesystem without locks: the file still names us
                if err.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP,
                                     errno.EINVAL):
                    os.close(fd)
                    raise
                warnings.warn(f'{self.bank_path}: this filesystem cannot lock files; make sure '
                              'no other job writes this bank', stacklevel=2)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the file was replaced meanwhile: lock the current one
        previous = read_holder(self.bank_path)
        if previous and not previous.get('released'):
            warnings.warn(f'{self.bank_path}: taking over the lock of a job that is no longer '
                          f'running ({_describe(previous)})', stacklevel=2)
        info = dict(host=socket.gethostname(), pid=os.getpid(),
                    started=time.strftime('%Y-%m-%dT%H:%M:%S'), command=self.command,
                    job_id=self.job_id)
        self._write(fd, info)
        self._fd = fd
        self.info = info
        return self

    @staticmethod
    def _write(fd, info):
        data = (json.dumps(info) + '\n').encode()
        os.ftruncate(fd, 0)
        write_all(fd, data, 0)

    def release(self):
        if self._fd is None:
            return
        try:
            self._write(self._fd, dict(self.info, released=True))
        except OSError:
            pass
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def check_shared(bank_path, job_id):
    """For ranks other than 0: the lock must be held by rank 0 of the same job."""
    holder = read_holder(bank_path)
    if not holder or holder.get('released') or holder.get('job_id') != job_id:
        raise BankLockedError(f'{bank_path}: the bank lock is not held by this job '
                              f'({job_id}) but by {_describe(holder)}')
