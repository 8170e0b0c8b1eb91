"""Consistent points: mark_consistent / rollback_to restore a bank bit for bit."""
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vedatad.membank import BankError, MemoryBank

sys.path.insert(0, str(Path(__file__).parent))
import membank_workers as workers  # noqa: E402

C = 64


def state(bank):
    """Everything rollback must restore: chunks, steps, flags, videos, never-written chunks."""
    out = {}
    for vid in bank.video_ids():
        n = bank.num_chunks(vid)
        entries, _ = bank._video(vid).files.snapshot()
        out[vid] = (bank.read_chunks(vid, range(n)).tobytes(), bank.read_steps(vid, 0, n).tolist(),
                    bank.is_complete(vid), (entries[:, 0] == 2**64 - 1).tolist())
    return out


def feats(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 16, C)).astype(np.float32)


@pytest.fixture
def bank(tmp_path):
    b = MemoryBank.create(tmp_path / 'bank', feat_dim=C, backbone='t')
    b.add_video('a', 32 * 6)   # 6 chunks
    b.add_video('b', 32 * 3 + 5)  # 4 chunks, the last one partial
    b.write_chunks('a', [0, 1, 2, 3], feats(4, 0), step=-1)  # 4, 5 never written
    b.write_chunks('b', [0, 1, 2, 3], feats(4, 1), step=-1)
    b.mark_complete('b')
    return b


def test_rollback_restores_the_marked_state_bit_for_bit(bank):
    bank.write_chunks('a', [1], feats(1, 2), step=3)
    bank.mark_consistent(10)
    marked = state(bank)
    bank.write_chunks('a', [1, 4], feats(2, 3), step=11)     # rewrite + first write ever
    bank.write_chunks('b', [3, 0], feats(2, 4), step=12)
    bank.write_chunks('a', [1], feats(1, 5), step=13)        # rewritten twice
    bank.mark_complete('a')
    bank.add_video('c', 64)
    bank.write_chunks('c', [0], feats(1, 6), step=14)
    assert state(bank) != marked
    bank.rollback_to(10)
    assert state(bank) == marked
    assert state(MemoryBank.open(bank.path)) == marked  # on disk, for every process
    assert not bank.has_video('c') and bank.video_ids() == ['a', 'b']
    assert bank.read_steps('a', 0, 6).tolist() == [-1, 3, -1, -1, -1, -1]
    assert not bank.read_chunks('a', [4]).any()  # never written before the mark: absent again
    # the bank keeps working after a rollback, and can be rolled back again
    bank.write_chunks('a', [4], feats(1, 7), step=11)
    bank.rollback_to(10)
    assert state(bank) == marked


def test_garbage_collection_keeps_what_journals_reference(bank):
    bank.mark_consistent(5)
    marked = state(bank)
    for k in range(30):  # many rewrites: garbage collection runs meanwhile
        bank.write_chunks('a', [0, 1, 2, 3, 4, 5], feats(6, 100 + k), step=6 + k)
    released = bank.collect_garbage()
    assert released > 0  # superseded slots were freed, the journal's kept
    bank.rollback_to(5)
    assert state(bank) == marked
    # once the journal is replaced by a newer mark, its slots become garbage too
    shard = bank.path / 'feats/a/c/0/0'
    for k in range(30):
        bank.write_chunks('a', [0, 1, 2, 3, 4, 5], feats(6, 200 + k), step=40 + k)
    bank.mark_consistent(70, keep=1)
    assert bank.journal_steps() == [70]
    live = 6 * (16 * C * 2 + 4)
    assert shard.stat().st_blocks * 512 < 3 * live + 65536  # not 60 rewrites' worth


def test_journals_kept_and_dropped(bank):
    for step in (1, 2, 3):
        bank.write_chunks('a', [0], feats(1, step), step=step)
        bank.mark_consistent(step)
    assert bank.journal_steps() == [2, 3]  # keep=2
    with pytest.raises(BankError) as err:
        bank.rollback_to(1)
    msg = str(err.value)
    assert 'no journal for step 1' in msg and '[2, 3]' in msg and 'cannot be brought back' in msg
    bank.rollback_to(2)
    assert bank.journal_steps() == [2]  # newer journals describe a future that is gone
    assert bank.read_steps('a', 0, 1).tolist() == [2]
    with pytest.raises(BankError, match='no journal for step 3'):
        bank.rollback_to(3)
    with pytest.raises(BankError, match='read-only'):
        MemoryBank.open(bank.path, 'r').rollback_to(2)


def test_rollback_after_several_processes_wrote_the_same_chunks(bank):
    """Ranks write chunks after the mark, one rewriting another's: the marked state wins."""
    bank.mark_consistent(0)
    marked = state(bank)
    ctx = mp.get_context('spawn')
    for writer_id, chunks in ((0, [0, 1, 2]), (1, [2, 3, 4]), (2, [4, 5, 0])):
        proc = ctx.Process(target=workers.writer, args=(str(bank.path), 'a', writer_id, chunks,
                                                        None, 3))
        proc.start()
        proc.join(120)
        assert proc.exitcode == 0
    assert state(MemoryBank.open(bank.path)) != marked
    bank.rollback_to(0)
    assert state(bank) == marked


def test_kill_9_mid_writes_then_rollback_is_consistent(tmp_path):
    bank = MemoryBank.create(tmp_path / 'bank', feat_dim=256, backbone='t')
    bank.add_video('v', 32 * 12)
    bank.write_chunks('v', list(range(12)), np.full((12, 16, 256), 0.5, np.float32), step=0)
    bank.mark_consistent(0)
    marked = state(bank)
    started = mp.get_context('spawn').Event()
    proc = mp.get_context('spawn').Process(target=workers.endless_writer,
                                           args=(str(bank.path), 'v', started))
    proc.start()
    assert started.wait(60)
    time.sleep(0.2 + np.random.default_rng().random() * 0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    fresh = MemoryBank.open(tmp_path / 'bank', 'r+')
    assert fresh.read_steps('v', 0, 12).max() > 0  # it really wrote after the mark
    fresh.rollback_to(0)
    assert state(MemoryBank.open(tmp_path / 'bank')) == marked
    fresh.write_chunks('v', [3], np.zeros((16, 256), np.float32), step=1)  # still writable
    assert not fresh.read_chunks('v', [3]).any()


def test_mark_in_progress_pauses_garbage_collection(bank):
    journal = bank._journal
    assert journal.kept_offsets('a') == set()
    bank.path.joinpath('journal').mkdir(exist_ok=True)
    live = bank.path / f'journal/mark_9.{socket.gethostname()}.{os.getpid()}.pending'
    live.write_text('')
    assert journal.kept_offsets('a') is None  # a live process is writing a mark: wait
    assert bank.collect_garbage() == 0
    live.unlink()
    dead = bank.path / f'journal/mark_9.{socket.gethostname()}.999999999.pending'
    dead.write_text('')
    assert journal.kept_offsets('a') == set()  # its writer is gone: ignored
    bank.mark_consistent(9)  # and cleared by the next mark
    assert not dead.exists() and bank.journal_steps() == [9]


def test_interrupted_rollback_is_reported_and_finished_by_running_it_again(bank):
    bank.mark_consistent(4)
    marked = state(bank)
    bank.write_chunks('a', [2], feats(1, 9), step=5)
    bank._journal.begin_rollback(4)  # as if a rollback had crashed right after step 1
    with pytest.warns(UserWarning, match=r'rollback to step 4 was interrupted; call '
                                         r'rollback_to\(4\) again'):
        again = MemoryBank.open(bank.path, 'r+')
    again.rollback_to(4)
    assert state(again) == marked
    assert again._journal.interrupted_rollback() is None
