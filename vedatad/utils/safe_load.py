"""Loading files that may come from elsewhere without running code from them.

``torch_load_safe``: ``torch.load(..., weights_only=True)`` (tensors and plain Python values
only), with errors that name the file and say what is wrong: refused because it holds other
objects (a pickled function call would run code), or unreadable (truncated, corrupted, not a
torch file). ``load_plain_pickle``: a pickle restricted to plain containers, numbers,
strings and numpy arrays / scalars (e.g. the video-level class score files of the release).
"""
import io
import pickle
from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint (or other weights file) that cannot be used; the message names it."""


class UnsafeFileError(CheckpointError):
    """A file refused because loading it could run code."""


def _first_line_with(text, *needles):
    for line in str(text).splitlines():
        if any(n.lower() in line.lower() for n in needles):
            return line.strip()
    return None


def torch_load_safe(path, map_location='cpu', what='checkpoint', allowed_globals=()):
    """``torch.load`` with ``weights_only=True``; errors name ``path`` (``what`` says what it
    is supposed to be). ``allowed_globals``: further plain-data types the file may hold
    (e.g. numpy scalars in a release's metadata)."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _first_line_with(err, 'unsupported global', 'unsupported class')
        if unsafe:
            raise UnsafeFileError(
                f'{path}: refused to load this {what}: it holds Python objects other than '
                f'tensors and plain values, and loading them could run arbitrary code '
                f'({unsafe}). Only load files from a source you trust; vedatad and the '
                'official ActionFormer / Video Swin releases write files that load safely.'
            ) from None
        raise CheckpointError(_unreadable(path, what, err)) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError,
            AttributeError, TypeError) as err:
        raise CheckpointError(_unreadable(path, what, err)) from None


def _unreadable(path, what, err):
    size = path.stat().st_size
    text = str(err).strip()
    reason = _first_line_with(err, 'eof', 'corrupt', 'zip', 'unsupported operand')
    if reason is None:
        reason = text.splitlines()[0] if text else type(err).__name__
    reason = reason.split('. ')[0].rstrip('.')
    return (f'{path}: not a readable {what} ({size} bytes): the file is truncated or corrupted, '
            f'or not a PyTorch file ({reason}). If it was being written when a job was killed, '
            'use an older checkpoint or copy the file again.')


# pickled globals a plain score file may use: numpy arrays, dtypes and scalars
_NUMPY_GLOBALS = {
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'), ('numpy._core.multiarray', 'scalar'),
    ('collections', 'OrderedDict'), ('builtins', 'set'), ('builtins', 'frozenset'),
    ('builtins', 'complex'),
    ('_codecs', 'encode'),  # protocol-2 pickles store bytes through it (a pure function)
}
_NUMPY_DTYPE_MODULES = ('numpy', 'numpy.dtypes')


class _PlainUnpickler(pickle.Unpickler):
    """Resolves only the globals of plain data; anything else is refused."""

    def find_class(self, module, name):
        if (module, name) in _NUMPY_GLOBALS or (
                module in _NUMPY_DTYPE_MODULES and name.endswith('DType')):
            import importlib
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f'global {module}.{name} is not plain data')


def load_plain_pickle(path, what='file'):
    """Unpickle ``path`` allowing only dict / list / tuple / set, numbers, strings, bytes,
    None and numpy arrays / scalars. Anything else is refused with an error naming the file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        # latin1: numpy arrays pickled by Python 2 (the release's score files) read back as is
        return _PlainUnpickler(io.BytesIO(data), encoding='latin1').load()
    except pickle.UnpicklingError as err:
        if 'is not plain data' in str(err):
            raise UnsafeFileError(f'{path}: refused to load this {what}: {err}; only plain '
                                  'containers, numbers, strings and numpy arrays are read '
                                  '(loading other objects could run arbitrary code)') from None
        raise CheckpointError(f'{path}: not a readable {what} (corrupted pickle: {err})') \
            from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise CheckpointError(f'{path}: not a readable {what} (truncated or corrupted pickle: '
                              f'{type(err).__name__}: {err})') from None
