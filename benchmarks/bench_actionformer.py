"""ActionFormer inference: vedatad vs the release's algorithm, side by side.

The THUMOS14 I3D model (2048-d input, 512-d transformer, local window 19, 29.3 M parameters,
the same seeded random weights on both sides) runs on the same random features of T steps.
The "release" side computes every step as the official ActionFormer release does
(``release_actionformer.py``: chunked local attention, reduction LayerNorm, float masks,
class-by-class soft-NMS in a compiled sequential kernel), on vedatad's own modules, so both
sides share weights, inputs and allocator settings (``keep_freed_memory``, as the tools).

For each T and side, fresh processes (alternated, ``--rounds`` each) measure:
- network: forward from padded features to per-level logits / offsets (median of repeats);
- post-processing: decode + NMS + seconds for the video, with ``--threads`` threads and
  with one thread (median of repeats);
- peak RSS: ``ru_maxrss`` of the process, and the part added by inference (peak minus the
  RSS after building the model and the input).
The detections of both sides are compared (largest difference of segments and scores,
labels equal) before any timing is reported.

    python benchmarks/bench_actionformer.py [--lengths 2304,4608,9216,18432] [--threads 2]
        [--repeats 3] [--rounds 2] [--train-step] [--device cuda]
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


def current_rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


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


def worker(side, T, repeats, threads, device_name):
    """One side at one T in this (fresh) process; prints a JSON line."""
    torch.set_num_threads(threads)
    keep_freed_memory()
    device = torch.device(device_name)
    model = build_model(device)
    feats = features(T, device)
    runner = (ReleaseSide if side == 'release' else VedatadSide)(model, feats)
    rss_before = current_rss_mb()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        gpu_before = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        outputs = runner.network()  # warm-up
        runner.postprocess(outputs)
        network, outputs = timed(runner.network, device, repeats)
        post, result = timed(lambda: runner.postprocess(outputs), device, repeats)
        torch.set_num_threads(1)
        post_1, _ = timed(lambda: runner.postprocess(outputs), device, repeats)
        torch.set_num_threads(threads)
    report = dict(network=network, post=post, post_1thread=post_1,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  rss_before_mb=rss_before,
                  detections={k: result[k].tolist() for k in ('segments', 'scores', 'labels')})
    if device.type == 'cuda':
        report['gpu_peak_mb'] = (torch.cuda.max_memory_allocated(device) - gpu_before) / 2 ** 20
    print(json.dumps(report))


def run_worker(side, T, args):
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', side, str(T),
           '--repeats', str(args.repeats), '--threads', str(args.threads),
           '--device', args.device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'{side} worker at T={T} failed:\n{out.stderr}')
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


def print_tables(rows, args, machine):
    print(f'ActionFormer THUMOS14 I3D model (29.3 M parameters), {machine}, {args.threads} '
          f'threads; median of {args.repeats} repeats x {args.rounds} alternated processes '
          f'per side (peak RSS: the largest)')
    print('\n| T | release network (s) | vedatad network (s) | time ratio | release peak RSS '
          '(MB) | vedatad peak RSS (MB) | memory ratio | release / vedatad inference RSS (MB) '
          '| inference memory ratio |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for T, r in rows:
        rel, ved = r['release'], r['vedatad']
        print(f"| {T} | {rel['network']:.3f} | {ved['network']:.3f} | "
              f"{ved['network'] / rel['network']:.2f} | {rel['peak']:.0f} | {ved['peak']:.0f} | "
              f"{ved['peak'] / rel['peak']:.2f} | {rel['own']:.0f} / {ved['own']:.0f} | "
              f"{ved['own'] / rel['own']:.2f} |")
    print(f'\n| T | candidates kept | release post-processing (s), {args.threads} threads | '
          f'vedatad (s) | ratio | release, 1 thread (s) | vedatad, 1 thread (s) | ratio | '
          'largest detection difference |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for T, r in rows:
        rel, ved = r['release'], r['vedatad']
        print(f"| {T} | {r['kept']} | {rel['post']:.4f} | {ved['post']:.4f} | "
              f"{ved['post'] / rel['post']:.2f} | {rel['post_1thread']:.4f} | "
              f"{ved['post_1thread']:.4f} | {ved['post_1thread'] / rel['post_1thread']:.2f} | "
              f"{r['diff']:.1e} |")
    worst = {k: max(r['vedatad'][k] / r['release'][k] for _, r in rows)
             for k in ('network', 'peak', 'own', 'post', 'post_1thread')}
    print(f"\ngoals at every T: network time ratio <= {TIME_GOAL} (worst {worst['network']:.2f}), "
          f"peak memory ratio <= {MEMORY_GOAL} (worst {worst['peak']:.2f}; inference part "
          f"{worst['own']:.2f}), post-processing ratio <= {POST_GOAL} (worst "
          f"{worst['post']:.2f} with {args.threads} threads, {worst['post_1thread']:.2f} "
          f"with 1)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads per process')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--rounds', type=int, default=2, help='alternated processes per side')
    parser.add_argument('--lengths', default='2304,4608,9216,18432',
                        help='comma-separated input lengths T')
    parser.add_argument('--train-step', action='store_true',
                        help='also time one vedatad training step (batch 2 x 2304)')
    parser.add_argument('--worker', nargs=2, metavar=('SIDE', 'T'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), args.repeats, args.threads,
                      args.device)

    rows = []
    for T in (int(t) for t in args.lengths.split(',')):
        runs = {side: [] for side in SIDES}
        for round_idx in range(args.rounds):
            order = SIDES if round_idx % 2 == 0 else SIDES[::-1]
            for side in order:
                runs[side].append(run_worker(side, T, args))
        seg_diff, score_diff, labels_equal = detection_difference(
            runs['release'][0]['detections'], runs['vedatad'][0]['detections'])
        if not labels_equal or max(seg_diff, score_diff) > 1e-3:
            raise SystemExit(f'T={T}: the two sides disagree (segments {seg_diff:.2e}, scores '
                             f'{score_diff:.2e}, labels equal: {labels_equal})')
        summary = {side: dict(
            network=statistics.median(r['network'] for r in res),
            post=statistics.median(r['post'] for r in res),
            post_1thread=statistics.median(r['post_1thread'] for r in res),
            peak=max(r['peak_rss_mb'] for r in res),
            own=max(r['peak_rss_mb'] - r['rss_before_mb'] for r in res))
            for side, res in runs.items()}
        summary['kept'] = len(runs['vedatad'][0]['detections']['scores'])
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
