"""ActionFormer inference: vedatad vs the release's algorithm, side by side.

The THUMOS14 I3D model (2048-d input, 512-d transformer, local window 19, 29.3 M parameters,
seeded random weights) runs on the same random features of T steps. The "release" side
computes every step as the official ActionFormer release does (``release_actionformer.py``:
chunked local attention, reduction LayerNorm, float masks, per-level sort, class-by-class
soft-NMS in a compiled sequential kernel) on vedatad's own modules, so both sides share
weights, inputs and allocator settings (``keep_freed_memory``, as the tools call it).

For each T:
- time: one fresh process builds both sides and alternates them call by call (``--repeats``
  calls each after a warm-up; medians): the network (padded features to per-level logits
  and offsets), and post-processing (decode + NMS + seconds) with ``--threads`` threads and
  with one thread;
- memory: a fresh process per side (alternated, ``--rounds`` each) runs network +
  post-processing twice: the process's peak RSS after the first call (``ru_maxrss``, median
  over the rounds; it also depends on how malloc reused freed blocks, which varies by
  10-20 % between identical runs), and the peak of live tensor memory during the second
  (from the profiler's allocation records: exact and repeatable; on a GPU, the GPU
  allocator's peak over both calls);
- the detections of both sides are compared (largest difference of segments and scores,
  labels equal) before anything is reported.

    python benchmarks/bench_actionformer.py [--lengths 2304,4608,9216,18432] [--threads 2]
        [--repeats 7] [--rounds 2] [--train-step] [--device cuda]
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
from release_actionformer import (ReleaseSoftNMS, release_network, release_pad,  # noqa: E402
                                  release_points, release_postprocess)

from vedatad.models.detectors.actionformer import ActionFormer  # noqa: E402
from vedatad.utils.allocator import keep_freed_memory  # noqa: E402

THUMOS_I3D = dict(
    input_dim=2048, num_classes=20, max_seq_len=2304, n_mha_win_size=19,
    train_cfg=dict(init_loss_norm=100, clip_grad_l2norm=1.0),
    test_cfg=dict(voting_thresh=0.7, pre_nms_topk=2000, max_seg_num=200, min_score=0.001))
SIDES = ('release', 'vedatad')
TIME_GOAL, MEMORY_GOAL, POST_GOAL = 0.8, 1.0, 1.0


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    """(median seconds, last result) over repeats calls."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def meta(T):
    return dict(video_id='bench', fps=30.0, duration=(T * 4 + 8) / 30.0, feat_stride=4,
                feat_num_frames=16)


def build_model(device):
    torch.manual_seed(0)
    return ActionFormer(**THUMOS_I3D).to(device).eval()


def features(T, device):
    return torch.randn(2048, T, generator=torch.Generator().manual_seed(T)).to(device)


class VedatadSide:
    def __init__(self, model, feats):
        self.model, self.meta = model, meta(feats.shape[-1])
        masks = torch.ones(1, feats.shape[-1], dtype=torch.bool, device=feats.device)
        self.inputs = model._pad(feats[None], masks)

    def network(self):
        return self.model._forward_net(*self.inputs)

    def postprocess(self, outputs):
        cls_logits, offsets, masks, points = outputs
        segs, scores, labels = self.model._decode_video(
            [x[0] for x in cls_logits], [x[0] for x in offsets], [m[0] for m in masks], points)
        return self.model.finalize_candidates(self.meta, segs, scores, labels)


class ReleaseSide:
    def __init__(self, model, feats):
        self.model, self.meta = model, meta(feats.shape[-1])
        self.inputs = tuple(t.to(feats.device) for t in release_pad(model, feats))
        # the release buffers its points once, when the model is built
        self.points = [p.to(feats.device) for p in release_points(model, self.inputs[0].shape[-1])]
        self.kernel = ReleaseSoftNMS()

    def network(self):
        return release_network(self.model, *self.inputs, self.points)

    def postprocess(self, outputs):
        return release_postprocess(self.model, self.kernel, outputs, self.meta)


def timing_worker(T, repeats, threads, device_name):
    """Both sides in this (fresh) process, alternated call by call; prints a JSON line."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    device = torch.device(device_name)
    model = build_model(device)
    feats = features(T, device)
    sides = {'release': ReleaseSide(model, feats), 'vedatad': VedatadSide(model, feats)}
    times = {side: {'network': [], 'post': [], 'post_1thread': []} for side in sides}
    detections = {}
    with torch.inference_mode():
        outputs = {side: runner.network() for side, runner in sides.items()}  # warm-up
        for side, runner in sides.items():
            detections[side] = runner.postprocess(outputs[side])
        for i in range(repeats):
            for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                seconds, outputs[side] = timed(sides[side].network, device, 1)
                times[side]['network'].append(seconds)
        for key, num_threads in (('post', threads), ('post_1thread', 1)):
            torch.set_num_threads(num_threads)
            for i in range(repeats):
                for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                    runner, out = sides[side], outputs[side]
                    times[side][key].append(timed(lambda: runner.postprocess(out), device, 1)[0])
        torch.set_num_threads(threads)
    report = {side: {k: statistics.median(v) for k, v in t.items()}
              for side, t in times.items()}
    report['detections'] = {side: {k: d[k].tolist() for k in ('segments', 'scores', 'labels')}
                            for side, d in detections.items()}
    print(json.dumps(report))


def peak_tensor_mb(fn):
    """The most CPU tensor memory live at once while fn() runs, above what was live before
    (MB), from the profiler's record of every allocation and free: unlike RSS, it does not
    depend on how malloc happened to reuse freed blocks in this process."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        fn()
    records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == '[memory]')
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak / 2 ** 20


def memory_worker(side, T, threads, device_name):
    """One side at one T in this (fresh) process: peak memory; prints a JSON line."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    device = torch.device(device_name)
    model = build_model(device)
    runner = (ReleaseSide if side == 'release' else VedatadSide)(model, features(T, device))
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        gpu_before = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        runner.postprocess(runner.network())  # the first call: what a user's run costs
        # (read before the profiled call, whose records take memory of their own)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tensor_mb = peak_tensor_mb(lambda: runner.postprocess(runner.network()))
    if device.type == 'cuda':  # the tensors live on the GPU: its allocator's peak
        tensor_mb = (torch.cuda.max_memory_allocated(device) - gpu_before) / 2 ** 20
    print(json.dumps(dict(peak_rss_mb=peak_rss_mb, tensor_mb=tensor_mb)))


def run_worker(args, *worker_args):
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', *map(str, worker_args),
           '--repeats', str(args.repeats), '--threads', str(args.threads),
           '--device', args.device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'worker {worker_args} failed:\n{out.stderr}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def detection_difference(a, b):
    """(largest |segment| and |score| difference, labels equal) of two detection lists."""
    sa, sb = torch.tensor(a['segments']), torch.tensor(b['segments'])
    if sa.shape != sb.shape:
        return float('inf'), float('inf'), False
    if sa.numel() == 0:
        return 0.0, 0.0, True
    return ((sa - sb).abs().max().item(),
            (torch.tensor(a['scores']) - torch.tensor(b['scores'])).abs().max().item(),
            a['labels'] == b['labels'])


def bench_train_step(batch_size, repeats, device):
    """vedatad only: forward + backward + AdamW on a batch of max_seq_len sequences."""
    keep_freed_memory()
    model = build_model(device).train()
    T = model.max_seq_len
    gen = torch.Generator().manual_seed(1)
    batch = []
    for i in range(batch_size):
        starts = torch.rand(8, generator=gen) * (T - 200)
        ends = starts + 20 + torch.rand(8, generator=gen) * 150
        batch.append({'video_id': f'train{i}', 'feats': torch.randn(2048, T, generator=gen),
                      'segments': torch.stack([starts, ends], 1),
                      'labels': torch.randint(0, 20, (8,), generator=gen)})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = model(batch, mode='loss')['final_loss']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocations, optimizer state)
    return timed(step, device, repeats)[0]


def markdown_table(headers, rows):
    print('| ' + ' | '.join(headers) + ' |')
    print('|' + '---:|' * len(headers))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')


def print_tables(rows, args, machine):
    print(f'ActionFormer THUMOS14 I3D model (29.3 M parameters), {machine}, {args.threads} '
          f'threads; time: median of {args.repeats} calls per side alternated in one process; '
          f'memory: {args.rounds} fresh processes per side (peak RSS: median)\n')
    ratio = lambda r, k: f"{r['vedatad'][k] / r['release'][k]:.2f}"  # noqa: E731
    markdown_table(
        ['T', 'release network (s)', 'vedatad network (s)', 'time ratio',
         'release peak tensor memory (MB)', 'vedatad (MB)', 'memory ratio',
         'release / vedatad peak RSS (MB)', 'RSS ratio'],
        [[str(T), f"{r['release']['network']:.3f}", f"{r['vedatad']['network']:.3f}",
          ratio(r, 'network'), f"{r['release']['tensors']:.0f}",
          f"{r['vedatad']['tensors']:.0f}", ratio(r, 'tensors'),
          f"{r['release']['rss']:.0f} / {r['vedatad']['rss']:.0f}", ratio(r, 'rss')]
         for T, r in rows])
    print()
    markdown_table(
        ['T', 'candidates kept', f'release post-processing (s), {args.threads} threads',
         'vedatad (s)', 'ratio', 'release, 1 thread (s)', 'vedatad, 1 thread (s)', 'ratio',
         'largest detection difference'],
        [[str(T), str(r['kept']), f"{r['release']['post']:.4f}", f"{r['vedatad']['post']:.4f}",
          ratio(r, 'post'), f"{r['release']['post_1thread']:.4f}",
          f"{r['vedatad']['post_1thread']:.4f}", ratio(r, 'post_1thread'), f"{r['diff']:.1e}"]
         for T, r in rows])
    worst = {k: max(r['vedatad'][k] / r['release'][k] for _, r in rows)
             for k in ('network', 'tensors', 'rss', 'post', 'post_1thread')}
    print(f"\ngoals at every T: network time ratio <= {TIME_GOAL} (worst {worst['network']:.2f}), "
          f"peak memory ratio <= {MEMORY_GOAL} (worst {worst['tensors']:.2f}; peak RSS "
          f"{worst['rss']:.2f}), post-processing ratio <= {POST_GOAL} (worst "
          f"{worst['post']:.2f} with {args.threads} threads, {worst['post_1thread']:.2f} "
          f"with 1)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads per process')
    parser.add_argument('--repeats', type=int, default=7, help='alternated calls per side')
    parser.add_argument('--rounds', type=int, default=2,
                        help='memory: alternated processes per side')
    parser.add_argument('--lengths', default='2304,4608,9216,18432',
                        help='comma-separated input lengths T')
    parser.add_argument('--train-step', action='store_true',
                        help='also time one vedatad training step (batch 2 x 2304)')
    parser.add_argument('--worker', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == 'time':
            return timing_worker(int(args.worker[1]), args.repeats, args.threads, args.device)
        return memory_worker(args.worker[1], int(args.worker[2]), args.threads, args.device)

    rows = []
    for T in (int(t) for t in args.lengths.split(',')):
        timing = run_worker(args, 'time', T)
        seg_diff, score_diff, labels_equal = detection_difference(
            timing['detections']['release'], timing['detections']['vedatad'])
        if not labels_equal or max(seg_diff, score_diff) > 1e-3:
            raise SystemExit(f'T={T}: the two sides disagree (segments {seg_diff:.2e}, scores '
                             f'{score_diff:.2e}, labels equal: {labels_equal})')
        memory = {side: [] for side in SIDES}
        for round_idx in range(args.rounds):
            for side in (SIDES if round_idx % 2 == 0 else SIDES[::-1]):
                memory[side].append(run_worker(args, 'memory', side, T))
        summary = {side: dict(
            timing[side],
            tensors=max(r['tensor_mb'] for r in memory[side]),
            rss=statistics.median(r['peak_rss_mb'] for r in memory[side]))
            for side in SIDES}
        summary['kept'] = len(timing['detections']['vedatad']['scores'])
        summary['diff'] = max(seg_diff, score_diff)
        rows.append((T, summary))
        print(f'T={T} done', file=sys.stderr)

    device = torch.device(args.device)
    machine = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'CPU ({os.cpu_count()} cores)'
    print_tables(rows, args, machine)
    if args.train_step:
        torch.set_num_threads(args.threads)
        step = bench_train_step(2, args.repeats, device)
        print(f'\nvedatad training step (batch 2 x T=2304, forward + backward + AdamW): '
              f'{step:.3f} s')


if __name__ == '__main__':
    main()
