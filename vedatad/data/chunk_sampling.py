"""Which chunks of a training window go through the backbone with gradients.

TALLFormer back-propagates through only ``floor(n_chunks * keep_ratio)`` of a window's
32-frame chunks (at least one); the rest come from the memory bank. Modes:

- ``random``: a uniformly random subset.
- ``uniform``: evenly spaced over the window (deterministic).
- ``uniform_jitter``: the window is cut into ``k`` equal strata and one chunk is drawn at
  random from each, so the picks stay spread out but every chunk can be chosen.
"""
import numpy as np

SAMPLING_MODES = ('random', 'uniform', 'uniform_jitter')


def num_fresh_chunks(num_chunks, keep_ratio):
    """floor(num_chunks * keep_ratio), at least one and at most num_chunks."""
    if num_chunks <= 0:
        raise ValueError(f'a window needs at least one chunk, got {num_chunks}')
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f'keep_ratio must lie in [0, 1], got {keep_ratio}')
    return int(min(num_chunks, max(1, int(np.floor(num_chunks * keep_ratio + 1e-9)))))


def select_fresh_chunks(num_chunks, keep_ratio, mode='random', rng=None, num_valid=None):
    """Sorted indices (within the window) of the chunks to recompute with gradients.

    ``num_valid`` limits the choice to the first chunks that hold real frames (a padded
    window's tail has nothing to learn from); the count is still taken from ``num_chunks``
    so every sample in a batch costs the same.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f'unknown chunk sampling mode {mode!r}; choose one of {SAMPLING_MODES}')
    rng = np.random.default_rng() if rng is None else rng
    pool = num_chunks if num_valid is None else max(1, min(num_valid, num_chunks))
    k = min(num_fresh_chunks(num_chunks, keep_ratio), pool)
    if mode == 'random':
        picks = rng.choice(pool, size=k, replace=False)
    elif mode == 'uniform':
        picks = np.floor(np.linspace(0, pool - 1, k)).astype(np.int64) if k > 1 else \
            np.array([(pool - 1) // 2])
    else:
        edges = np.linspace(0, pool, k + 1)
        # strata are at least one chunk wide (k <= pool), so the picks never collide
        lo, hi = np.floor(edges[:-1]).astype(np.int64), np.floor(edges[1:]).astype(np.int64)
        picks = np.minimum(lo + (rng.random(k) * (hi - lo)).astype(np.int64), hi - 1)
    return np.unique(picks).astype(np.int64)
