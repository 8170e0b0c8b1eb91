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
        out = np.empty(self.chunk_shape, dtype=self.dtype)
        self.read_into(index, out)
        return out

    def read_into(self, index, out):
        """Fill ``out`` (chunk_shape, this dtype, C-contiguous) with chunk ``index``."""
        path = self._path(index)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            out[...] = self.fill_value
            return
        try:
            got = os.readv(fd, [memoryview(out).cast('B')])
        finally:
            os.close(fd)
        if got != out.nbytes:
            raise OSError(f'{path}: chunk file has {got} bytes, expected {out.nbytes} '
                          '(not written by this bank format?)')

    def write(self, index, chunk):
        """Replace chunk ``index`` atomically (temporary file + rename)."""
        data = self._bytes(index, chunk)
        path = self._path(index)
        tmp = path.with_suffix(f'.{uuid.uuid4().hex}.partial')
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:  # first chunk written under this grid row
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_small_in_place(self, index, chunk):
        """Overwrite an existing chunk of at most 8 bytes with one aligned ``pwrite``.

        For the per-chunk step counters only: an 8-byte write at offset 0 lands in one
        disk sector and one page, and a counter is bookkeeping (never features), so it
        is updated in place rather than paying a file creation + rename per entry. A
        chunk file that does not exist yet is created atomically.
        """
        data = self._bytes(index, chunk)
        if len(data) > 8:
            raise ValueError(f'{self.folder}: in-place writes are for chunks of <= 8 bytes')
        try:
            fd = os.open(self._path(index), os.O_WRONLY)
        except FileNotFoundError:
            return self.write(index, chunk)
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)

    def _bytes(self, index, chunk):
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape != self.chunk_shape:
            raise ValueError(f'{self.folder}: chunk {index} must have shape '
                             f'{self.chunk_shape}, got {chunk.shape}')
        return chunk.tobytes()
