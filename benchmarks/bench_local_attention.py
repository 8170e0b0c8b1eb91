"""Local attention: vedatad's fused block kernel vs the release's chunked algorithm.

THUMOS14 I3D attention shape (4 heads x 128 channels, window 19). Each side runs in its own
fresh process per T (peak RSS = ru_maxrss of that process), the sides alternate, and the
time is the median of the repeats. Outputs are compared first (max abs difference).

    python benchmarks/bench_local_attention.py [--quick] [--threads 2] [--repeats 5]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from release_actionformer import release_local_attention  # noqa: E402

HEADS, HEAD_DIM, HALF = 4, 128, 9


def inputs(T, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, HEADS, T, HEAD_DIM, generator=g) for _ in range(3))
    mask = torch.arange(T)[None] < T - T // 7  # padded tail
    rel_pe = torch.randn(1, 1, HEADS, 2 * HALF + 1, generator=g)
    return q * HEAD_DIM ** -0.5, k, v, mask, rel_pe


def kernel(side):
    if side == 'official':
        return release_local_attention
    from vedatad.models.attention import local_attention
    return local_attention


def child(side, T, repeats, threads):
    torch.set_num_threads(threads)
    fn = kernel(side)
    args = inputs(T)
    times = []
    with torch.inference_mode():
        fn(*args[:4], HALF, args[4])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            fn(*args[:4], HALF, args[4])
            times.append(time.perf_counter() - start)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({'time': statistics.median(times), 'rss_mb': rss}))


def run_child(side, T, repeats, threads):
    out = subprocess.run([sys.executable, __file__, '--child', side, str(T), str(repeats),
                          str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='T = 576 and 1152 only')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=2, help='alternated processes per side')
    parser.add_argument('--child', nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, T, repeats, threads = args.child
        return child(side, int(T), int(repeats), int(threads))
    lengths = (576, 1152) if args.quick else (2304, 4608, 9216, 18432)
    diff = max((kernel('vedatad')(*inputs(T)[:4], HALF, inputs(T)[4]) -
                release_local_attention(*inputs(T)[:4], HALF, inputs(T)[4])).abs().max().item()
               for T in (36, 90, lengths[0]))
    print(f'max |vedatad - release algorithm| over T = 36, 90, {lengths[0]}: {diff:.1e}')
    print(f'{args.threads} threads, median of {args.repeats} x {args.rounds} alternated processes')
    print('| T | release algorithm (s) | vedatad (s) | time ratio | release peak RSS (MB) | '
          'vedatad peak RSS (MB) | memory ratio |')
    print('|---:|---:|---:|---:|---:|---:|---:|')
    for T in lengths:
        res = {'official': [], 'vedatad': []}
        for _ in range(args.rounds):
            for side in ('official', 'vedatad'):
                res[side].append(run_child(side, T, args.repeats, args.threads))
        t = {s: statistics.median(r['time'] for r in v) for s, v in res.items()}
        m = {s: max(r['rss_mb'] for r in v) for s, v in res.items()}
        print(f"| {T} | {t['official']:.3f} | {t['vedatad']:.3f} | "
              f"{t['vedatad'] / t['official']:.2f} | {m['official']:.0f} | {m['vedatad']:.0f} | "
              f"{m['vedatad'] / m['official']:.2f} |")


if __name__ == '__main__':
    main()
