"""Keep freed CPU memory for reuse instead of returning it to the system.

glibc serves allocations above a threshold (128 KiB to 32 MiB, adaptive) with fresh ``mmap``
pages and unmaps them when freed, so every large temporary tensor pays page faults and
zero-filling again. Long sequences (tens of thousands of feature steps) allocate hundreds of
MB per layer, which made ActionFormer inference grow faster than its linear FLOP count.
Raising the mmap and trim thresholds keeps such buffers in the heap for the next layer.
"""
import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

_done = False


def keep_freed_memory(mmap_threshold=2**30, trim_threshold=2**31, top_pad=2**26):
    """Tune glibc malloc once per process; a no-op (returns False) on other platforms."""
    global _done
    if _done or not sys.platform.startswith('linux'):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, int(value)) == 1 for param, value in (
        (M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold),
        (M_TOP_PAD, top_pad)))
    _done = ok
    return ok
