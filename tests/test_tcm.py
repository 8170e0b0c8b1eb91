import numpy as np
import pytest
import torch

from vedatad.data.chunk_sampling import (SAMPLING_MODES, num_fresh_chunks,
                                         select_fresh_chunks)
from vedatad.models.tcm import TemporalConsistencyModule


@pytest.mark.parametrize('mode', SAMPLING_MODES)
def test_fresh_chunk_count_and_range(mode):
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 15, 24):
        for ratio in (0.0, 0.15, 0.5, 1.0):
            picks = select_fresh_chunks(n, ratio, mode, rng)
            assert len(picks) == max(1, int(np.floor(n * ratio))) == num_fresh_chunks(n, ratio)
            assert np.all(np.diff(picks) > 0) and picks.min() >= 0 and picks.max() < n


def test_fresh_chunks_stay_inside_valid_part():
    rng = np.random.default_rng(1)
    for _ in range(50):
        picks = select_fresh_chunks(15, 0.5, 'random', rng, num_valid=3)
        assert picks.max() < 3 and len(picks) == 3


def test_random_modes_cover_every_chunk():
    rng = np.random.default_rng(2)
    for mode in ('random', 'uniform_jitter'):
        seen = set()
        for _ in range(200):
            seen.update(select_fresh_chunks(15, 0.15, mode, rng).tolist())
        assert seen == set(range(15)), mode


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='keep_ratio'):
        select_fresh_chunks(4, 1.5)
    with pytest.raises(ValueError, match='sampling mode'):
        select_fresh_chunks(4, 0.5, mode='every_other')


def test_tcm_shapes_and_padding_isolation():
    torch.manual_seed(0)
    tcm = TemporalConsistencyModule(in_channels=32, out_channels=16, num_reductions=2, depth=2,
                                    num_heads=4, max_len=16).eval()
    x = torch.randn(2, 32, 60)
    mask = torch.ones(2, 60, dtype=torch.bool)
    mask[1, 36:] = False
    y, m = tcm(x, mask)
    assert y.shape == (2, 16, 15) and m.shape == (2, 15)
    assert m[1].sum() == 9 and torch.all(y[1, :, 9:] == 0)
    x2 = x.clone()
    x2[1, :, 36:] = 1e3  # garbage in the padding must not change valid outputs
    y2, _ = tcm(x2, mask)
    torch.testing.assert_close(y[:, :, :9], y2[:, :, :9])


def test_tcm_relative_bias_is_learned():
    torch.manual_seed(0)
    tcm = TemporalConsistencyModule(in_channels=8, out_channels=8, num_reductions=0, depth=1,
                                    num_heads=2, max_len=64).eval()
    x = torch.randn(1, 8, 20)
    full = torch.ones(1, 20, dtype=torch.bool)
    y, _ = tcm(x, full)
    assert y.shape == (1, 8, 20)
    y.sum().backward()
    assert tcm.layers[0].attn.rel_bias.relative_position_bias_table.grad is not None


def test_tcm_depth_zero_is_reduction_only():
    tcm = TemporalConsistencyModule(in_channels=8, out_channels=4, num_reductions=1, depth=0)
    y, m = tcm(torch.randn(1, 8, 9), torch.ones(1, 9, dtype=torch.bool))
    assert y.shape == (1, 4, 5) and len(tcm.layers) == 0


def test_allocator_tuning_is_idempotent():
    import sys

    from vedatad.utils.allocator import keep_freed_memory
    first, second = keep_freed_memory(), keep_freed_memory()
    assert first == second
    assert first is sys.platform.startswith('linux')
