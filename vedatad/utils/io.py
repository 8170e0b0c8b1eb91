"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each writer goes to a temporary file in the destination folder (same filesystem, so the
final ``os.replace`` is a rename) and is flushed to disk before the rename.
"""
import json
import os
import tempfile
from pathlib import Path


def _default_file_mode():
    """0o666 minus the process umask: what open() would give (mkstemp alone gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path, data: bytes):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path, obj, indent=None):
    atomic_write_text(path, json.dumps(obj, indent=indent))


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
