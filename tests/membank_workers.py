"""Processes used by test_membank.py (a module so that 'spawn' children can import them)."""
import os
import time

import numpy as np

from vedatad.membank import MemoryBank


def token_chunk(token, rows, dim):
    """A chunk whose every entry equals ``token``: a torn chunk would mix two tokens."""
    return np.full((1, rows, dim), float(token), dtype=np.float32)


def writer_token(writer_id, k):
    """Distinct per (writer, round), exact in float16 for k < 250."""
    return k * 8 + writer_id + 1


def writer(path, video, writer_id, own_chunks, shared_chunk, rounds):
    bank = MemoryBank.open(path, 'r+')
    rows, dim = bank.rows_per_chunk, bank.feat_dim
    for k in range(rounds):
        token = token_chunk(writer_token(writer_id, k), rows, dim)
        for cid in own_chunks:
            bank.write_chunks(video, [cid], token, step=k)
        if shared_chunk is not None:
            bank.write_chunks(video, [shared_chunk], token, step=k)


def endless_writer(path, video, started):
    """Rewrites every chunk until killed."""
    bank = MemoryBank.open(path, 'r+')
    n, rows, dim = bank.num_chunks(video), bank.rows_per_chunk, bank.feat_dim
    k = 0
    while True:
        ids = list(range(n))
        data = np.concatenate([token_chunk(1 + (k + c) % 1000, rows, dim) for c in ids])
        bank.write_chunks(video, ids, data, step=k)
        k += 1
        if k == 3:
            started.set()


def reader(path, video, chunk, deadline_s, result_queue):
    """Reads one chunk over and over; reports reads, torn reads and distinct tokens seen."""
    bank = MemoryBank.open(path, 'r')
    torn, reads, seen = 0, 0, set()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        window = bank.read_window(video, chunk, 1)
        reads += 1
        values = np.unique(window)
        if values.size != 1:
            torn += 1
        seen.add(float(values[0]))
    result_queue.put((os.getpid(), reads, torn, len(seen)))


def hold_lock(path, held, release):
    """Take the bank's writer lock, say so, and keep it until ``release`` is set."""
    from vedatad.membank import BankLock
    lock = BankLock(path, command='membank_workers.hold_lock').acquire()
    held.set()
    release.wait(120)
    lock.release()


def copy_bank(src, dst, barrier, results):
    """Copy a bank as soon as every copier is ready; report what happened."""
    from vedatad.membank import BankError
    barrier.wait(60)
    try:
        bank = MemoryBank.copy(src, dst)
        results.put(('ok', bank.video_ids()))
    except BankError as err:
        results.put(('BankError', str(err)))
    except Exception as err:  # noqa: BLE001 - the test wants to see anything else
        results.put((type(err).__name__, str(err)))
