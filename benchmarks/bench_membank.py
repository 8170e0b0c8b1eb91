"""Memory-bank traffic of one TALLFormer training step: vedatad vs the original design vs the
page-cache limit, alternated in one run.

Per step, a window of ``--window-chunks`` chunks (15 = 480 frames) is used: ``keep_ratio`` of
them (2) go through the backbone and are written back, the other 13 come from the bank.

(a) vedatad, exactly what a training step does: the DataLoader worker reads the 13 stale
    chunks and their step entries (``read_chunks(..., with_steps=True)``), the training
    process writes the 2 fresh chunks with their step (``write_chunks``, float32 torch
    features as the backbone gives them), garbage collection included. Atomic against
    crashes, checksummed. (a+) adds what a checkpoint adds: ``flush()`` (fsync of the
    written bytes) once per round of ``--steps`` windows, its cost spread over them.
(b) the original TALLFormer access pattern, written from its description: one float32
    ``np.memmap`` per video, opened for every call: a read call copies the 13 stale chunks,
    a write call assigns the 2 fresh chunks and ``flush()``es (msync). Not atomic.
(c) the physical limit: the same bytes as (a) with one ``preadv`` (13 chunks, float16,
    contiguous, descriptor kept open, from a file as large as the bank) and one ``pwrite``
    per fresh chunk. (c') the same on a one-video file, whose bytes the CPU cache holds: an
    upper bound no bank of many videos reaches, printed for comparison.

Each round runs every variant on the same windows, in rotating order; the table gives the
median over rounds (machine load affects all variants alike). Sustained windows/s are
steps / wall time, including flush and garbage-collection work.

    python benchmarks/bench_membank.py [--feat-dim 1024 --window-chunks 15 --keep-ratio 0.15]
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vedatad.membank import MemoryBank
from vedatad.utils.allocator import keep_freed_memory

ROWS_PER_CHUNK = 16


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--feat-dim', type=int, default=1024)
    p.add_argument('--videos', type=int, default=64,
                   help='videos in the bank: windows rarely meet the same chunk twice')
    p.add_argument('--frames', type=int, default=3000, help='frames per video')
    p.add_argument('--window-chunks', type=int, default=15, help='480 frames = 15 chunks')
    p.add_argument('--keep-ratio', type=float, default=0.15)
    p.add_argument('--steps', type=int, default=200, help='windows per round (one flush)')
    p.add_argument('--rounds', type=int, default=7)
    p.add_argument('--dir', default=None, help='where to put the stores (default: a temp '
                   'folder under workdir/, on the same disk as real banks)')
    return p.parse_args()


class VedatadStep:
    """(a): the calls a training step makes. The reading handle is opened anew every round,
    as DataLoader workers are every epoch (their first read of a chunk checks its crc32c)."""
    name = '(a) vedatad training step: worker reads + write-back'

    def __init__(self, path):
        self.path = path
        self.bank = MemoryBank.open(path, 'r+')     # the training process
        self.reader = MemoryBank.open(path, 'r')    # a DataLoader worker
        self.checks = self.spared = 0

    def window(self, vid, stale, fresh_ids, fresh, step):
        self.reader.read_chunks(vid, stale, with_steps=True)        # DataLoader worker
        self.bank.write_chunks(vid, fresh_ids, fresh, step=step)    # training process

    def end_round(self):
        for video in self.reader._videos.values():
            self.checks += video.files.checks
            self.spared += video.files.check_hits
        self.reader.close()
        self.reader = MemoryBank.open(self.path, 'r')  # the next epoch's workers


class VedatadStepFlushed(VedatadStep):
    """(a) plus the durability point a checkpoint adds: flush() = fsync of what was written."""
    name = '(a+) the same + flush() (fsync) once per round'

    def end_round(self):
        self.bank.flush()
        super().end_round()


class OriginalMemmap:
    """(b): float32 (rows, C) file per video, a memmap opened per call, flush after writes."""
    name = '(b) original: float32 np.memmap per video, reopened per call, flush'

    def __init__(self, folder, rows, dim):
        self.folder, self.shape = Path(folder), (rows, dim)

    def path(self, vid):
        return self.folder / f'{vid}.f32'

    def create(self, vid, feats):
        mm = np.memmap(self.path(vid), dtype=np.float32, mode='w+', shape=self.shape)
        mm[:] = feats[:self.shape[0]]
        mm.flush()
        del mm

    def read_chunks(self, vid, chunk_ids):
        mm = np.memmap(self.path(vid), dtype=np.float32, mode='r', shape=self.shape)
        rpc = ROWS_PER_CHUNK
        return [np.array(mm[c * rpc:(c + 1) * rpc]) for c in chunk_ids]

    def write_chunks(self, vid, chunk_ids, fresh):
        mm = np.memmap(self.path(vid), dtype=np.float32, mode='r+', shape=self.shape)
        rpc = ROWS_PER_CHUNK
        for k, c in enumerate(chunk_ids):
            stop = min((c + 1) * rpc, self.shape[0])  # the last chunk may be partial
            mm[c * rpc:stop] = fresh[k][:stop - c * rpc]
        mm.flush()

    def window(self, vid, stale, fresh_ids, fresh, step):
        self.read_chunks(vid, stale)
        self.write_chunks(vid, fresh_ids, fresh.numpy())

    def end_round(self):
        pass


class PageCacheLimit:
    """(c): one preadv of the stale bytes, a pwrite per fresh chunk, descriptor kept open.
    The file is as large as the bank's features (every video, float16) and each window
    reads its own video's place in it, so the bytes come from memory as the bank's do (a
    small file would be served from the CPU cache)."""
    name = '(c) limit: one preadv of the same bytes + a pwrite per fresh chunk'

    def __init__(self, path, videos, num_chunks, dim, n_stale, n_fresh):
        self.chunk = ROWS_PER_CHUNK * dim * 2  # float16 bytes, as the bank stores them
        self.num_chunks = num_chunks
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        block = os.urandom(self.chunk) * num_chunks
        for v in range(videos):
            os.pwrite(self.fd, block, v * num_chunks * self.chunk)
        self.bufs = [np.empty(self.chunk, np.uint8) for _ in range(n_stale)]
        self.fresh = [np.zeros(self.chunk, np.uint8) for _ in range(n_fresh)]

    def window(self, vid, stale, fresh_ids, fresh, step):
        base = int(vid.split('_')[1]) * self.num_chunks
        os.preadv(self.fd, self.bufs, (base + stale[0]) * self.chunk)
        for buf, c in zip(self.fresh, fresh_ids):
            os.pwrite(self.fd, buf, (base + c) * self.chunk)

    def end_round(self):
        pass


class CachedLimit(PageCacheLimit):
    """(c'): the same calls on a file of one video (a few MB): the bytes come from the CPU
    cache, which no real bank of many videos enjoys."""
    name = "(c') limit on a one-video file (bytes from the CPU cache)"

    def __init__(self, path, num_chunks, dim, n_stale, n_fresh):
        super().__init__(path, 1, num_chunks, dim, n_stale, n_fresh)

    def window(self, vid, stale, fresh_ids, fresh, step):
        super().window('video_0', stale, fresh_ids, fresh, step)


def make_plan(args, num_chunks, rng):
    """(video, stale chunk ids, fresh chunk ids) per step, on the 32-frame grid."""
    n_fresh = max(1, int(args.window_chunks * args.keep_ratio))
    plan = []
    for _ in range(args.steps):
        vid = f'video_{rng.integers(args.videos):04d}'
        first = int(rng.integers(0, num_chunks - args.window_chunks + 1))
        window = list(range(first, first + args.window_chunks))
        fresh = sorted(int(c) for c in rng.choice(window, n_fresh, replace=False))
        plan.append((vid, [c for c in window if c not in fresh], fresh))
    return plan


def run_round(store, plan, fresh, step0):
    """(wall seconds, CPU seconds of this thread) per window."""
    start, cpu = time.perf_counter(), time.thread_time()
    for k, (vid, stale, fresh_ids) in enumerate(plan):
        store.window(vid, stale, fresh_ids, fresh, step0 + k)
    store.end_round()
    return ((time.perf_counter() - start) / len(plan),
            (time.thread_time() - cpu) / len(plan))


def main():
    args = parse_args()
    keep_freed_memory()  # as the trainer does: large buffers are reused, not page-faulted
    torch.set_num_threads(1)
    base = Path(args.dir) if args.dir else Path('workdir')
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix='bench_membank_', dir=base))
    try:
        rng = np.random.default_rng(0)
        bank = MemoryBank.create(folder / 'bank.zarr', args.feat_dim, 'bench')
        rows = bank.num_rows_for(args.frames)
        num_chunks = -(-rows // ROWS_PER_CHUNK)
        mem = OriginalMemmap(folder / 'memmap', rows, args.feat_dim)
        mem.folder.mkdir()
        for v in range(args.videos):
            vid = f'video_{v:04d}'
            feats = rng.standard_normal((num_chunks * ROWS_PER_CHUNK, args.feat_dim),
                                        dtype=np.float32)
            bank.add_video(vid, args.frames)
            bank.write_chunks(vid, list(range(num_chunks)), feats, step=-1)
            mem.create(vid, feats)
        plan = make_plan(args, num_chunks, rng)
        n_stale, n_fresh = len(plan[0][1]), len(plan[0][2])
        fresh = torch.randn(n_fresh, ROWS_PER_CHUNK, args.feat_dim)
        # the same chunks seen through (a) and (b): check before timing
        vid, stale, _ = plan[0]
        np.testing.assert_allclose(bank.read_chunks(vid, stale[:3]).astype(np.float32),
                                   np.stack(mem.read_chunks(vid, stale[:3])), atol=1e-2,
                                   rtol=1e-2)
        stores = [VedatadStep(folder / 'bank.zarr'), mem,
                  PageCacheLimit(folder / 'limit.bin', args.videos, num_chunks, args.feat_dim,
                                 n_stale, n_fresh), VedatadStepFlushed(folder / 'bank.zarr'),
                  CachedLimit(folder / 'small.bin', num_chunks, args.feat_dim, n_stale,
                              n_fresh)]
        times = {s.name: [] for s in stores}
        for s in stores:  # warm caches
            run_round(s, plan[:20], fresh, 0)
        for r in range(args.rounds):
            for s in stores[r % len(stores):] + stores[:r % len(stores)]:
                times[s.name].append(run_round(s, plan, fresh, (r + 1) * args.steps))
        report(args, stores, times, n_stale, n_fresh, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(args, stores, times, n_stale, n_fresh, folder):
    med = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    a, b, c, a_flushed, c_small = (med[s.name] for s in stores)
    mb = (n_stale + n_fresh) * ROWS_PER_CHUNK * args.feat_dim * 2 / 2 ** 20
    print(f'window: {args.window_chunks} chunks ({args.window_chunks * 32} frames, '
          f'C={args.feat_dim}): {n_stale} stale chunks read (+ steps), {n_fresh} fresh chunks '
          f'written back per step; median of {args.rounds} rounds x {args.steps} steps, '
          f'variants alternated; stores in {folder.parent}')
    print('| variant | ms / window | sustained windows/s | MB/s (float16 bytes) | '
          'CPU ms / window | atomic + crash-safe |')
    print('|---|---:|---:|---:|---:|---|')
    for s, safe in zip(stores, ('yes (append + index repoint, crc32c)', 'no', 'no',
                                'yes, and durable at each flush', 'no')):
        t = med[s.name]
        print(f'| {s.name} | {t * 1e3:.3f} | {1 / t:.0f} | {mb / t:.0f} | '
              f'{cpu[s.name] * 1e3:.3f} | {safe} |')
    print(f'(a) vs (b): {b / a:.2f}x the original access pattern (goal >= 1.0x)')
    print(f'(a) vs (c): {100 * c / a:.1f} % of the page-cache limit (goal >= 10 %); in CPU '
          f'time of the thread {100 * cpu[stores[2].name] / cpu[stores[0].name]:.1f} % (what '
          'a busy machine distorts least: both are CPU-bound)')
    print(f"(a) vs (c'): {100 * c_small / a:.1f} % (CPU time "
          f"{100 * cpu[stores[4].name] / cpu[stores[0].name]:.1f} %) of the limit on a "
          'cache-resident file')
    print(f'(a+) vs (b): {b / a_flushed:.2f}x; (a+) vs (c): {100 * c / a_flushed:.1f} % '
          f'(flush = fsync: disk writes, which (c) does not do)')
    checks, spared = stores[0].checks + stores[3].checks, stores[0].spared + stores[3].spared
    print(f'(a) crc32c checks: {checks} chunk reads checked, {spared} spared (slot already '
          'checked by the same reading handle)')
    print('per-round ms/window:', {s.name[:4].strip(): [round(t[0] * 1e3, 3)
                                                        for t in times[s.name]]
                                   for s in stores})


if __name__ == '__main__':
    main()
