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


def read_json(path, error_cls=ValueError):
    """Parse a JSON file; invalid JSON raises ``error_cls`` naming the file."""
    path = Path(path)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise error_cls(f'{path}: not valid JSON ({e})') from e
