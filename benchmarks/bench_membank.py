"""Memory-bank window throughput: zarr bank vs the original float32 np.memmap design.

One training step of TALLFormer reads a window of chunks from the bank and writes back the
fresh ones (keep_ratio of the window). Both stores hold the same features; the memmap
baseline follows the original code: one float32 file per video, opened for every access,
fancy-indexed read, write, ``flush()``. Rounds alternate between stores and the median is
reported, so machine load affects both alike.

    python benchmarks/bench_membank.py [--feat-dim 1024 --window-chunks 15 --keep-ratio 0.15]
"""
import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vedatad.membank import MemoryBank


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--feat-dim', type=int, default=1024)
    p.add_argument('--videos', type=int, default=8)
    p.add_argument('--frames', type=int, default=3000, help='frames per video')
    p.add_argument('--window-chunks', type=int, default=15, help='480 frames = 15 chunks')
    p.add_argument('--keep-ratio', type=float, default=0.15)
    p.add_argument('--steps', type=int, default=100, help='windows per round')
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--dir', default=None, help='where to put the stores (default: a temp '
                   'folder under workdir/, on the same disk as real banks)')
    return p.parse_args()


class MemmapBank:
    """The original design: float32 (rows, C) file per video, reopened on every access."""

    def __init__(self, folder, rows, dim):
        self.folder, self.rows, self.dim = Path(folder), rows, dim

    def path(self, vid):
        return self.folder / f'{vid}.bin'

    def create(self, vid, feats):
        mm = np.memmap(self.path(vid), dtype=np.float32, mode='w+', shape=feats.shape)
        mm[:] = feats
        mm.flush()

    def read_window(self, vid, first, num, rpc=16):
        mm = np.memmap(self.path(vid), dtype=np.float32, mode='r', shape=(self.rows, self.dim))
        ids = np.arange(first * rpc, (first + num) * rpc)
        out = np.zeros((len(ids), self.dim), np.float32)
        valid = ids[ids < self.rows]
        out[:len(valid)] = mm[valid.tolist()]
        return out

    def write_chunks(self, vid, chunk_ids, feats, step=None, rpc=16):  # no step record
        mm = np.memmap(self.path(vid), dtype=np.float32, mode='r+', shape=(self.rows, self.dim))
        ids = np.concatenate([np.arange(c * rpc, (c + 1) * rpc) for c in chunk_ids])
        keep = ids < self.rows
        mm[ids[keep].tolist()] = feats.reshape(-1, self.dim)[keep]
        mm.flush()


def make_plan(args, num_chunks, rng):
    """(video, first chunk, fresh chunk ids) per step, on the 32-frame grid."""
    fresh = max(1, int(args.window_chunks * args.keep_ratio))
    plan = []
    for _ in range(args.steps):
        vid = f'video_{rng.integers(args.videos):04d}'
        first = int(rng.integers(0, num_chunks - args.window_chunks + 1))
        ids = sorted(rng.choice(args.window_chunks, fresh, replace=False) + first)
        plan.append((vid, first, [int(i) for i in ids]))
    return plan


def run_round(store, plan, window_chunks, rng_feats):
    start = time.perf_counter()
    for step, (vid, first, ids) in enumerate(plan):
        store.read_window(vid, first, window_chunks)
        store.write_chunks(vid, ids, rng_feats[:len(ids) * 16], step=step)
    return len(plan) / (time.perf_counter() - start)


def main():
    args = parse_args()
    base = Path(args.dir) if args.dir else Path('workdir')
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix='bench_membank_', dir=base))
    try:
        rng = np.random.default_rng(0)
        bank = MemoryBank.create(folder / 'bank.zarr', args.feat_dim, 'bench')
        rows = bank.num_rows_for(args.frames)
        num_chunks = -(-rows // 16)
        mem = MemmapBank(folder / 'memmap', rows, args.feat_dim)
        mem.folder.mkdir()
        for v in range(args.videos):
            vid = f'video_{v:04d}'
            feats = rng.standard_normal((num_chunks * 16, args.feat_dim)).astype(np.float32)
            bank.add_video(vid, args.frames)
            bank.write_chunks(vid, list(range(num_chunks)), feats, step=-1)
            mem.create(vid, feats[:rows])
        fresh_feats = rng.standard_normal((args.window_chunks * 16, args.feat_dim),
                                          dtype=np.float32)
        # same data seen through both: check before timing
        np.testing.assert_allclose(bank.read_window('video_0000', 2, 3),
                                   mem.read_window('video_0000', 2, 3), atol=1e-2, rtol=1e-2)
        plan = make_plan(args, num_chunks, rng)
        run_round(bank, plan[:10], args.window_chunks, fresh_feats)  # warm caches
        run_round(mem, plan[:10], args.window_chunks, fresh_feats)
        zarr_rates, mm_rates = [], []
        for _ in range(args.rounds):
            zarr_rates.append(run_round(bank, plan, args.window_chunks, fresh_feats))
            mm_rates.append(run_round(mem, plan, args.window_chunks, fresh_feats))
        print("per-round windows/s, zarr:", [round(r) for r in zarr_rates],
              "memmap:", [round(r) for r in mm_rates])
        report(args, statistics.median(zarr_rates), statistics.median(mm_rates))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(args, zarr_rate, mm_rate):
    fresh = max(1, int(args.window_chunks * args.keep_ratio))
    mb = args.window_chunks * 16 * args.feat_dim * 4 / 2 ** 20
    print(f'window: {args.window_chunks} chunks read ({args.window_chunks * 32} frames, '
          f'C={args.feat_dim}), {fresh} chunks written back per step; median of '
          f'{args.rounds} rounds x {args.steps} steps')
    print('| store | windows/s | read MB/s (float32 equiv.) | atomic chunks |')
    print('|---|---|---|---|')
    print(f'| zarr bank (float16) | {zarr_rate:.1f} | {zarr_rate * mb:.0f} | yes |')
    print(f'| np.memmap float32, reopened + flush (original) | {mm_rate:.1f} | '
          f'{mm_rate * mb:.0f} | no |')
    print(f'ratio zarr / memmap: {zarr_rate / mm_rate:.2f} (goal >= 0.8)')


if __name__ == '__main__':
    main()
