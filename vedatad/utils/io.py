"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each writer goes to a temporary file in the destination folder (same filesystem, so the
final ``os.replace`` is a rename). Every byte is checked to be written (short writes are
continued, errors raise), the file is flushed to disk before the rename and the folder
after it, so a crash at any point leaves the previous file or the complete new one. On a
full disk the temporary file is removed, the previous file is left as it was, and
``AtomicWriteError`` (an ``OSError``) names the file and says what to do.
"""
import errno
import json
import os
from pathlib import Path

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class AtomicWriteError(OSError):
    """A file could not be written; the message names it, the previous file is intact."""


def _default_file_mode():
    """0o666 minus the process umask: what open() would give (mkstemp alone gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


def disk_full_hint(err):
    """' (disk full: ...)' for out-of-space errors, '' otherwise."""
    if getattr(err, 'errno', None) in DISK_FULL_ERRNOS:
        return (f' (disk full: {os.strerror(err.errno)}; free space on that filesystem or '
                'write somewhere else, then run the same command again)')
    return ''


def write_all(fd, data, offset=None):
    """Write every byte of ``data`` to ``fd`` (at ``offset`` with pwrite, else at the file
    position), continuing after short writes; returns the byte count. A write that makes
    no progress raises ``OSError(ENOSPC)``: the kernel reports a full disk either as an
    error or as a short write followed by an error."""
    view = memoryview(data).cast('B')
    done = 0
    while done < len(view):
        if offset is None:
            n = os.write(fd, view[done:])
        else:
            n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n
    return done


def fsync_dir(folder):
    """Make a rename / file creation in ``folder`` durable (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def temp_name(path):
    """A new hidden temporary file name next to ``path`` (same folder, same filesystem)."""
    return path.with_name(f'.{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp')


def write_temp(path, data: bytes, durable=True):
    """Write ``data`` to a new temporary file next to ``path``; returns its path. The file
    is removed again if anything fails (``AtomicWriteError`` names ``path``)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    except OSError as err:
        raise AtomicWriteError(err.errno, f'{path}: cannot create a temporary file: '
                                          f'{err.strerror}{disk_full_hint(err)}') from err
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise AtomicWriteError(err.errno, f'{path}: not written ({err.strerror})'
                                              f'{disk_full_hint(err)}; the previous file, '
                                              'if any, is unchanged') from err
        raise
    return tmp


def atomic_write_bytes(path, data: bytes, durable=True):
    """Replace ``path`` by a file holding exactly ``data``. ``durable``: fsync the file and
    its folder (survives a machine crash); without it a process crash is still safe."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp(path, data, durable)
    try:
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise AtomicWriteError(err.errno, f'{path}: cannot rename the new file into '
                                              f'place ({err.strerror})') from err
        raise
    if durable:
        fsync_dir(path.parent)


def publish_new_file(path, data: bytes, durable=True):
    """Create ``path`` holding ``data`` only if it does not exist (atomically: a hard link
    of a complete temporary file). Returns True when created, False when ``path`` already
    existed (it is left untouched: another process published it first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_temp(path, data, durable)
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    except OSError as err:
        raise AtomicWriteError(err.errno, f'{path}: cannot publish the new file '
                                          f'({err.strerror}){disk_full_hint(err)}') from err
    finally:
        tmp.unlink(missing_ok=True)
    if created and durable:
        fsync_dir(path.parent)
    return created


def atomic_write_text(path, text: str, durable=True):
    atomic_write_bytes(path, text.encode('utf-8'), durable)


def atomic_write_json(path, obj, indent=None, durable=True):
    atomic_write_text(path, json.dumps(obj, indent=indent), durable)


def atomic_torch_save(obj, path):
    """torch.save through a temporary file, so a crash never leaves a torn checkpoint."""
    import io

    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class _DuplicateKey(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs):
    """``object_pairs_hook`` that refuses a key twice in one object (``json.load`` would keep
    the last one silently: two videos with one id, two fields with one name)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):  # rare: find the repeated key for the message
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def read_json(path, error_cls=ValueError):
    """Parse a JSON file; invalid, truncated or non-UTF-8 JSON and a key repeated in one
    object raise ``error_cls`` naming the file (and the key or position)."""
    path = Path(path)
    try:
        with open(path, encoding='utf-8-sig') as f:  # a byte-order mark is tolerated
            return json.load(f, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as e:
        raise error_cls(f'{path}: the key {e.key!r} appears twice in one JSON object '
                        '(a video id or field given twice); keep one') from None
    except UnicodeDecodeError as e:
        raise error_cls(f'{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the file '
                        'as UTF-8') from None
    except json.JSONDecodeError as e:
        hint = ' (the file ends early: truncated?)' if e.pos >= len(e.doc.rstrip()) else ''
        raise error_cls(f'{path}: not valid JSON ({e}){hint}') from e
