"""Direct reads and writes of the chunk files of a plain (uncompressed) zarr v3 array.

Going through zarr's generic codec pipeline costs about a millisecond per call, several
times the cost of the data itself for a 16-row feature chunk. Bank arrays are created
uncompressed with the ``bytes`` codec (little endian) and the default ``c/i/j`` chunk keys,
so a chunk file is exactly the chunk's little-endian bytes in C order. This module reads and
writes those files itself: the files stay what zarr writes and reads (tests check both
directions), and a write still goes to a temporary ``*.partial`` file renamed into place,
as zarr's local store does, so a chunk is never torn. Arrays with any other layout are not
handled here (``for_array`` returns None) and the bank falls back to zarr's API.
"""
import os
import uuid
from pathlib import Path

import numpy as np


def _is_plain(meta):
    codecs = meta.get('codecs', [])
    encoding = meta.get('chunk_key_encoding', {})
    return (meta.get('zarr_format') == 3
            and meta.get('chunk_grid', {}).get('name') == 'regular'
            and encoding.get('name') == 'default'
            and encoding.get('configuration', {}).get('separator', '/') == '/'
            and len(codecs) == 1 and codecs[0].get('name') == 'bytes'
            and codecs[0].get('configuration', {}).get('endian', 'little') == 'little'
            and not meta.get('storage_transformers'))


class ChunkFiles:
    """Chunks along the first axis of an array whose chunks span all other axes."""

    def __init__(self, folder, shape, chunk_shape, dtype, fill_value):
        self.folder = Path(folder)
        self.shape = tuple(shape)
        self.chunk_shape = tuple(chunk_shape)
        self.dtype = np.dtype(dtype).newbyteorder('<')
        self.fill_value = fill_value
        # trailing grid indices are all 0: chunks span every axis but the first
        self._suffix = '/0' * (len(self.shape) - 1)

    @classmethod
    def for_array(cls, folder, array):
        """ChunkFiles for a zarr Array stored in ``folder``, or None if not plain."""
        meta = array.metadata.to_dict()
        if not _is_plain(meta) or tuple(array.chunks[1:]) != tuple(array.shape[1:]):
            return None
        return cls(folder, array.shape, array.chunks, array.dtype, array.fill_value)

    def _path(self, index):
        return self.folder / f'c/{index}{self._suffix}'

    def read(self, index):
        """Chunk ``index`` as an array of ``chunk_shape`` (fill value if never written)."""
        try:
            with open(self._path(index), 'rb') as f:
                data = f.read()
        except FileNotFoundError:
            return np.full(self.chunk_shape, self.fill_value, dtype=self.dtype)
        return np.frombuffer(data, dtype=self.dtype).reshape(self.chunk_shape)

    def write(self, index, chunk):
        """Replace chunk ``index`` atomically (temporary file + rename)."""
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape != self.chunk_shape:
            raise ValueError(f'{self.folder}: chunk {index} must have shape '
                             f'{self.chunk_shape}, got {chunk.shape}')
        path = self._path(index)
        tmp = path.with_suffix(f'.{uuid.uuid4().hex}.partial')
        try:
            with open(tmp, 'wb') as f:
                f.write(chunk.data)
        except FileNotFoundError:  # first chunk written under this grid row
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, 'wb') as f:
                f.write(chunk.data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
