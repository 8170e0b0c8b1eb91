"""Memory bank: format, reads/writes, modes, copy, and real multi-process concurrency."""
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from vedatad.membank import BankError, BankReadOnlyError, MemoryBank

sys.path.insert(0, str(Path(__file__).parent))
import membank_workers as workers  # noqa: E402

C = 8


@pytest.fixture
def bank(tmp_path):
    b = MemoryBank.create(tmp_path / 'bank', feat_dim=C, backbone='VideoSwin-demo',
                          config=dict(crop=(112, 112), weights=None))
    b.add_video('vid_a', num_frames=100)  # 50 rows -> 4 chunks (last one 2 rows)
    return b


def _feats(n_chunks, seed=0):
    return np.random.default_rng(seed).standard_normal((n_chunks * 16, C)).astype(np.float32)


def test_group_attributes_and_layout(bank):
    meta = json.loads((bank.path / 'zarr.json').read_text())
    attrs = meta['attributes']
    assert meta['zarr_format'] == 3
    assert attrs['format'] == 'vedatad.membank' and attrs['format_version'] == 2
    assert attrs['feat_dim'] == C and attrs['backbone'] == 'VideoSwin-demo'
    assert (attrs['frames_per_row'], attrs['frames_per_chunk'], attrs['dtype']) == \
        (2, 32, 'float16')
    assert attrs['config'] == {'crop': [112, 112], 'weights': None}
    group = zarr.open_group(bank.path, mode='r')  # zarr itself sees the group and arrays
    arr = group['feats/vid_a']
    assert arr.shape == (50, C) and arr.chunks == (16, C) and arr.dtype == np.float16
    assert arr.shards == (64, C)  # all chunks of a video in one shard file
    steps = group['steps/vid_a']
    assert steps.shape == (4,) and (steps[:] == -1).all()
    assert bank.num_chunks('vid_a') == 4 and bank.num_frames('vid_a') == 100
    files = sorted(str(p.relative_to(bank.path)) for p in bank.path.rglob('*') if p.is_file())
    assert files == ['feats/vid_a/c/0/0', 'feats/vid_a/zarr.json', 'feats/zarr.json',
                     'steps/vid_a/c/0', 'steps/vid_a/zarr.json', 'steps/zarr.json',
                     'zarr.json']


def test_read_chunks_returns_stored_dtype_in_request_order(bank):
    data = _feats(4, seed=3)
    bank.write_chunks('vid_a', [0, 1, 2, 3], data, step=0)
    got = bank.read_chunks('vid_a', [3, 0, 2])
    assert got.dtype == np.float16 and got.shape == (3, 16, C)
    stored = data.astype(np.float16).reshape(4, 16, C)
    np.testing.assert_array_equal(got[1], stored[0])
    np.testing.assert_array_equal(got[2], stored[2])
    np.testing.assert_array_equal(got[0, :2], stored[3, :2])  # 50 rows: chunk 3 holds 2
    assert not got[0, 2:].any()
    with pytest.raises(BankError, match=r'vid_a: chunk ids \[4\] outside'):
        bank.read_chunks('vid_a', [1, 4])


def test_roundtrip_partial_last_chunk_and_zero_padding(bank):
    data = _feats(4)
    assert bank.write_chunks('vid_a', [0, 1, 2, 3], data, step=0)
    window = bank.read_window('vid_a', 0, 6)
    assert window.dtype == np.float32 and window.shape == (96, C)
    np.testing.assert_allclose(window[:50], data[:50], rtol=1e-3, atol=1e-3)
    assert not window[50:].any()  # past the end of the video: zeros
    np.testing.assert_allclose(bank.read_window('vid_a', 1, 1), data[16:32], atol=1e-3)
    assert not bank.read_window('vid_a', 7, 2).any()
    # zarr itself reads the same values
    np.testing.assert_array_equal(zarr.open_array(bank.path / 'feats/vid_a', mode='r')[:],
                                  data[:50].astype(np.float16))


def test_bank_reads_what_zarr_writes(bank):
    before = bank.read_window('vid_a', 0, 4)  # descriptors now open on the old files
    arr = zarr.open_array(bank.path / 'feats/vid_a', mode='r+')
    values = _feats(4, seed=3)[:50].astype(np.float16)
    arr[:] = values  # zarr rewrites the shard (a new file renamed into place)
    assert not before.any()
    np.testing.assert_array_equal(bank.read_window('vid_a', 0, 4)[:50], values)
    zarr.open_array(bank.path / 'steps/vid_a', mode='r+')[:] = [3, 4, 5, 6]
    assert bank.read_steps('vid_a', 0, 5).tolist() == [3, 4, 5, 6, -1]
    # and the bank keeps writing into what zarr wrote
    bank.write_chunks('vid_a', [1], np.ones((16, C), np.float32), step=9)
    np.testing.assert_array_equal(arr[16:32], np.ones((16, C), np.float16))
    np.testing.assert_array_equal(arr[:16], values[:16])


def test_zarr_reads_what_the_bank_writes_including_rewrites(bank):
    first, second = _feats(4, seed=1), _feats(2, seed=2)
    bank.write_chunks('vid_a', [0, 1, 2, 3], first, step=0)
    bank.write_chunks('vid_a', [3, 1], second, step=4)  # appended, index repointed
    expect = first.astype(np.float16)
    expect[16:32], expect[48:64] = second[16:32], second[:16]
    arr = zarr.open_array(bank.path / 'feats/vid_a', mode='r')
    np.testing.assert_array_equal(arr[:], expect[:50])
    assert zarr.open_array(bank.path / 'steps/vid_a', mode='r')[:].tolist() == [0, 4, 0, 4]


def test_write_order_steps_and_staleness(bank):
    data = _feats(2, seed=1)
    bank.write_chunks('vid_a', [3, 1], data.reshape(2, 16, C), step=7)  # (n, 16, C), unsorted
    np.testing.assert_allclose(bank.read_window('vid_a', 1, 1), data[16:32], atol=1e-3)
    np.testing.assert_allclose(bank.read_window('vid_a', 3, 1)[:2], data[:2], atol=1e-3)
    assert bank.read_steps('vid_a', 0, 6).tolist() == [-1, 7, -1, 7, -1, -1]
    bank.write_chunks('vid_a', [0], _feats(1), step=10)
    stats = bank.staleness(12)
    assert stats['chunks'] == 4 and stats['written'] == 3 and stats['never_written'] == 1
    assert stats['max'] == 5 and stats['min'] == 2
    assert stats['mean'] == pytest.approx((5 + 5 + 2) / 3)


def test_torch_tensors_accepted(bank):
    torch = pytest.importorskip('torch')
    t = torch.randn(16, C, requires_grad=True)
    bank.write_chunks('vid_a', [2], t * 2, step=1)
    np.testing.assert_allclose(bank.read_window('vid_a', 2, 1), (t * 2).detach().numpy(),
                               atol=1e-2)


@pytest.mark.parametrize('ids, shape, match', [
    ([0], (15, C), 'whole chunks'),
    ([0, 1], (16, C), 'whole chunks'),
    ([0], (16, C + 1), 'whole chunks'),
    ([4], (16, C), r'outside \[0, 4\)'),
    ([-1], (16, C), 'outside'),
    ([1, 1], (32, C), 'repeated'),
])
def test_write_refuses_bad_data(bank, ids, shape, match):
    with pytest.raises(BankError, match=match) as err:
        bank.write_chunks('vid_a', ids, np.zeros(shape, np.float32), step=0)
    assert 'vid_a' in str(err.value) and str(bank.path) in str(err.value)
    assert (bank.read_steps('vid_a', 0, 4) == -1).all()


def test_non_finite_and_unknown_video(bank):
    bad = np.zeros((16, C), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(BankError, match='non-finite'):
        bank.write_chunks('vid_a', [0], bad, step=0)
    with pytest.raises(BankError, match="'nope' is not in the bank"):
        bank.read_window('nope', 0, 1)


def test_add_video_rules(bank):
    bank.add_video('vid_a', 100)  # same size: no-op
    with pytest.raises(BankError, match='exists with 100 frames'):
        bank.add_video('vid_a', 101)
    for bad in ('a/b', '__x', '', '..'):
        with pytest.raises(BankError, match='cannot name'):
            bank.add_video(bad, 10)
    bank.add_video('v_-01K1HxqPB8', 33)  # ActivityNet-style id: 17 rows -> 2 chunks
    assert bank.num_chunks('v_-01K1HxqPB8') == 2
    assert bank.video_ids() == ['v_-01K1HxqPB8', 'vid_a']


def test_complete_markers_visible_to_other_handles(bank):
    other = MemoryBank.open(bank.path, 'r')
    assert not other.is_complete('vid_a') and not other.is_complete('missing')
    bank.mark_complete('vid_a')
    assert other.is_complete('vid_a')


def test_read_only_and_frozen_modes(bank):
    bank.write_chunks('vid_a', [0], _feats(1, seed=5), step=1)
    before = bank.read_window('vid_a', 0, 4)
    ro = MemoryBank.open(bank.path, 'r')
    with pytest.raises(BankReadOnlyError, match='read-only'):
        ro.write_chunks('vid_a', [0], _feats(1), step=2)
    with pytest.raises(BankReadOnlyError):
        ro.add_video('new', 10)
    frozen = MemoryBank.open(bank.path, 'r+', frozen=True)
    assert frozen.write_chunks('vid_a', [0], _feats(1), step=2) is False
    assert frozen.skipped_writes == 1
    with pytest.raises(BankError, match='whole chunks'):  # still validated
        frozen.write_chunks('vid_a', [0], _feats(1)[:3], step=2)
    with pytest.raises(BankReadOnlyError, match='frozen'):
        frozen.mark_complete('vid_a')
    np.testing.assert_array_equal(bank.read_window('vid_a', 0, 4), before)
    assert bank.read_steps('vid_a', 0, 1).tolist() == [1]


def test_create_open_errors(tmp_path, bank):
    with pytest.raises(BankError, match='already exists'):
        MemoryBank.create(bank.path, C, 'x')
    with pytest.raises(BankError, match='no memory bank'):
        MemoryBank.open(tmp_path / 'nothing')
    zarr.open_group(str(tmp_path / 'plain'), mode='w')
    with pytest.raises(BankError, match='not a memory bank'):
        MemoryBank.open(tmp_path / 'plain')
    with pytest.raises(BankError, match='mode'):
        MemoryBank.open(bank.path, 'w')


def test_copy_template_to_working_bank(tmp_path, bank):
    bank.write_chunks('vid_a', [0, 1, 2, 3], _feats(4), step=0)
    bank.mark_complete('vid_a')
    work = MemoryBank.copy(bank.path, tmp_path / 'runs' / 'work_bank')
    assert work.mode == 'r+' and work.is_complete('vid_a')
    np.testing.assert_array_equal(work.read_window('vid_a', 0, 4), bank.read_window('vid_a', 0, 4))
    work.write_chunks('vid_a', [1], np.ones((16, C), np.float32), step=9)
    assert not np.allclose(bank.read_window('vid_a', 1, 1), 1.0)  # template untouched
    with pytest.raises(BankError, match='already exists'):
        MemoryBank.copy(bank.path, tmp_path / 'runs' / 'work_bank')
    assert not [p for p in (tmp_path / 'runs').iterdir() if p.name.startswith('.')]


def test_pickled_bank_reopens(bank):
    import pickle
    bank.write_chunks('vid_a', [0], _feats(1, seed=2), step=3)
    clone = pickle.loads(pickle.dumps(MemoryBank.open(bank.path, 'r+', frozen=True)))
    assert clone.mode == 'r+' and clone.frozen and clone.skipped_writes == 0
    np.testing.assert_array_equal(clone.read_window('vid_a', 0, 1), bank.read_window('vid_a', 0, 1))


def _spawn(target, *args):
    proc = mp.get_context('spawn').Process(target=target, args=args)
    proc.start()
    return proc


def test_concurrent_writers_lose_nothing_and_never_tear(tmp_path):
    bank = MemoryBank.create(tmp_path / 'bank', feat_dim=64, backbone='t')
    bank.add_video('v', 32 * 9)  # 9 chunks
    rounds, n_writers = 200, 4
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    # writer w owns chunks {w, w + 4}; everybody also rewrites chunk 8
    procs = [_spawn(workers.writer, str(bank.path), 'v', w, [w, w + 4], 8, rounds)
             for w in range(n_writers)]
    readers = [_spawn(workers.reader, str(bank.path), 'v', cid, 3.0, queue) for cid in (8, 0)]
    for proc in procs + readers:
        proc.join(120)
        assert proc.exitcode == 0
    distinct = []
    for _ in readers:
        _, reads, torn, seen = queue.get(timeout=10)
        assert reads > 0 and torn == 0
        distinct.append(seen)
    assert max(distinct) > 1  # the readers really ran while chunks were being replaced
    fresh = MemoryBank.open(bank.path, 'r')
    for w in range(n_writers):
        for cid in (w, w + 4):  # each owner's last write survived
            assert np.all(fresh.read_window('v', cid, 1) == workers.writer_token(w, rounds - 1))
    shared = fresh.read_window('v', 8, 1)
    assert np.unique(shared).size == 1  # one writer's full data, not a mix
    assert shared[0, 0] in {workers.writer_token(w, rounds - 1) for w in range(n_writers)}
    assert (fresh.read_steps('v', 0, 9) == rounds - 1).all()


def test_sigkill_mid_write_leaves_every_chunk_readable(tmp_path):
    bank = MemoryBank.create(tmp_path / 'bank', feat_dim=256, backbone='t')
    bank.add_video('v', 32 * 12)
    started = mp.get_context('spawn').Event()
    proc = mp.get_context('spawn').Process(target=workers.endless_writer,
                                           args=(str(bank.path), 'v', started))
    proc.start()
    assert started.wait(60)
    time.sleep(0.3 + np.random.default_rng().random() * 0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    fresh = MemoryBank.open(bank.path, 'r+')
    for cid in range(12):
        chunk = fresh.read_window('v', cid, 1)
        assert np.unique(chunk).size == 1 and chunk[0, 0] >= 1  # whole, written data
    arr = zarr.open_array(bank.path / 'feats/v', mode='r')[:]  # zarr agrees
    assert arr.shape == (192, 256)
    # the bank stays writable after the crash
    fresh.write_chunks('v', [0], np.zeros((16, 256), np.float32), step=0)
    assert not fresh.read_window('v', 0, 1).any()
