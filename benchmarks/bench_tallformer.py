"""TALLFormer training step vs a naive end-to-end step: peak memory and step time.

Both variants train the same model on the same window: Video Swin on 32-frame chunks
(same activation checkpointing, same frozen stages), Temporal Consistency Module and the
ActionFormer head, forward + backward + AdamW step.

- ``tallformer``: ``keep_ratio`` 0.15, so ``floor(n_chunks * 0.15)`` (at least 1) chunks per
  window go through the backbone with gradients and the others are read from the memory bank.
- ``naive``: the same TALLFormer model with ``keep_ratio=1.0``: every chunk goes through the
  backbone with gradients. Reusing the model (rather than calling
  ``extract_window_features`` by hand) keeps one code path: the same chunk reshaping, TCM,
  head and losses, so the difference measured is the backbone work alone. The naive step
  therefore also reads the window from the bank (all of it is then overwritten) and writes
  its chunks back; that disk traffic (under 0.5 MiB per window even for Swin-B) is small
  next to the backbone, and is part of both timings.

Weights are random (``pretrained=None``): speed and memory do not depend on their values.
The bank is a temporary one filled with random features.

Measurement:
- step time: median of ``--steps`` steps after one warm-up step (allocations, AdamW state).
- CPU memory: each variant runs in a fresh subprocess that reports its max RSS
  (``getrusage``); a baseline subprocess builds the same model, optimizer, bank and batch
  but takes no step, and its max RSS is subtracted, so the ratio compares step memory
  (activations, gradients, AdamW state, bank I/O buffers). Raw numbers are printed too.
- GPU memory: ``torch.cuda.max_memory_allocated`` over the timed steps (after the
  warm-up, so AdamW state exists); "step memory" is that peak minus what was allocated
  before the steps (parameters, AdamW state, batch). Each variant also runs in its own
  subprocess so one variant's cached blocks never count for the other.

    python benchmarks/bench_tallformer.py                      # demo preset, CPU
    python benchmarks/bench_tallformer.py --preset thumos_swin_b --steps 5   # GPU only
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from mmengine.config import Config

from vedatad.membank import MemoryBank
from vedatad.models.chunk_sampling import num_fresh_chunks
from vedatad.registry import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs', 'tallformer')
MEMORY_GOAL, TIME_GOAL = 0.25, 0.30

PRESETS = {
    # tiny Video Swin on 56x56 crops: sized for a 2-core CPU
    'demo': dict(config='demo_tiny.py', window=480, batch=2, crop=56, amp=None,
                 gpu_only=False, steps=5),
    # the original "12 GB" THUMOS14 setting: Swin-B, 224 crops, stages 1-2 frozen, with_cp
    'thumos_swin_b': dict(config='thumos_swin_b_256_crop224.py', window=480, batch=4,
                          crop=224, amp='bf16', gpu_only=True, steps=5),
    'thumos_swin_t': dict(config='thumos_swin_t_128_crop112.py', window=480, batch=4,
                          crop=112, amp='bf16', gpu_only=True, steps=5),
}
VARIANTS = {'tallformer': 0.15, 'naive': 1.0}  # variant -> keep_ratio


# ------------------------------------------------------------------ setup
def build(preset, keep_ratio, device):
    """The preset's TALLFormer with the window-dependent sizes set for ``preset['window']``."""
    cfg = Config.fromfile(os.path.join(CONFIGS, preset['config']))
    steps = preset['window'] // 8  # 2 frames per Swin row x TCM stride 4
    cfg.merge_from_dict({'model.keep_ratio': keep_ratio, 'model.chunk_sampling': 'random',
                         'model.backbone.pretrained': None, 'model.membank.template': None,
                         'model.membank.path': None, 'model.tcm.max_len': steps,
                         'model.detector.max_seq_len': steps})
    return build_model(cfg.model.to_dict()).to(device), cfg.model.detector.num_classes


def make_bank(model, work_dir, num_videos, num_frames):
    """A template bank with random features for every video, opened by the model."""
    template = os.path.join(work_dir, 'template')
    bank = MemoryBank.create(template, feat_dim=model.backbone.out_channels,
                             backbone='bench', frames_per_chunk=model.chunk_size)
    rng = np.random.default_rng(0)
    for v in range(num_videos):
        vid = f'video{v}'
        bank.add_video(vid, num_frames)
        ids = list(range(bank.num_chunks(vid)))
        feats = rng.standard_normal((len(ids), bank.rows_per_chunk, bank.feat_dim))
        bank.write_chunks(vid, ids, feats.astype(np.float32), step=-1)
        bank.mark_complete(vid)
    model.membank_cfg['template'] = template
    model.setup_work_dir(work_dir, resume=False, rank=0)  # private copy, written in place


def make_batch(preset, num_classes, num_frames, chunk_size):
    """One training batch in the ``collate_video_windows`` format, window-relative frames."""
    B, W, S = preset['batch'], preset['window'], preset['crop']
    g = torch.Generator().manual_seed(0)
    segments, labels = [], []
    for _ in range(B):
        starts = torch.rand(3, generator=g) * (W - 100)
        segments.append(torch.stack([starts, starts + 20 + torch.rand(3, generator=g) * 70], 1))
        labels.append(torch.randint(0, num_classes, (3,), generator=g))
    n_first = num_frames // chunk_size - W // chunk_size + 1
    offsets = torch.randint(0, n_first, (B,), generator=g) * chunk_size
    metas = [dict(video_id=f'video{b}', fps=15.0, duration=num_frames / 15.0,
                  num_frames=num_frames, window_size=W) for b in range(B)]
    return dict(imgs=torch.randn(B, 3, W, S, S, generator=g),
                masks=torch.ones(B, W, dtype=torch.bool), frame_offsets=offsets,
                video_index=torch.arange(B), metas=metas, gt_segments=segments,
                gt_labels=labels)


# ------------------------------------------------------------------ one variant
def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def train_step(model, optimizer, batch, amp, device):
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(amp)
    with torch.autocast('cuda', dtype=dtype, enabled=bool(amp) and device.type == 'cuda'):
        loss = model(batch, mode='loss')['final_loss']
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def run_worker(args):
    """Build everything; unless this is the baseline, warm up and time ``steps`` steps.
    Prints one JSON line."""
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    device = torch.device(args.device)
    torch.manual_seed(0)
    np.random.seed(0)  # TALLFormer draws its fresh chunks from numpy's global state
    keep = VARIANTS.get(args.worker, VARIANTS['tallformer'])
    model, num_classes = build(preset, keep, device)
    model.train()
    num_frames = 2 * preset['window']  # windows start anywhere in a video twice as long
    batch = make_batch(preset, num_classes, num_frames, model.chunk_size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    n_chunks = preset['window'] // model.chunk_size
    chunks = 0 if args.worker == 'baseline' else num_fresh_chunks(n_chunks, keep)
    out = dict(variant=args.worker, chunks=chunks, n_chunks=n_chunks)
    with tempfile.TemporaryDirectory(prefix='bench_tallformer_') as work_dir:
        make_bank(model, work_dir, preset['batch'], num_frames)
        if args.worker != 'baseline':
            out.update(measure(model, optimizer, batch, preset['amp'], device, args.steps))
    out['max_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print('RESULT ' + json.dumps(out), flush=True)


def measure(model, optimizer, batch, amp, device, steps):
    train_step(model, optimizer, batch, amp, device)  # warm-up: allocations, AdamW state
    sync(device)
    if device.type == 'cuda':
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps):
        model.on_train_iter_start(i + 1)
        sync(device)
        start = time.perf_counter()
        train_step(model, optimizer, batch, amp, device)
        sync(device)
        times.append(time.perf_counter() - start)
    out = dict(step_time=statistics.median(times), times=times)
    if device.type == 'cuda':
        peak = torch.cuda.max_memory_allocated(device)
        out.update(gpu_peak_mib=peak / 2**20, gpu_before_mib=before / 2**20)
    return out


# ------------------------------------------------------------------ driver
def spawn(args, worker):
    """Run one measurement in a fresh interpreter (a clean max RSS / CUDA allocator)."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', worker,
           '--preset', args.preset, '--threads', str(args.threads), '--steps', str(args.steps),
           '--device', args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    if proc.returncode or not lines:
        sys.exit(f'{worker} measurement failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def memory_columns(result, baseline, device):
    """(peak MiB, step MiB): absolute peak and the part the step itself adds."""
    if device == 'cuda':
        return result['gpu_peak_mib'], result['gpu_peak_mib'] - result['gpu_before_mib']
    return result['max_rss_mib'], result['max_rss_mib'] - baseline['max_rss_mib']


def verdict(ratio, goal):
    return 'met' if ratio <= goal else 'NOT met'


def report(args, results, baseline):
    preset = PRESETS[args.preset]
    where = torch.cuda.get_device_name(0) if args.device == 'cuda' else \
        f'CPU, {args.threads} thread(s)'
    kind = 'max_memory_allocated' if args.device == 'cuda' else 'max RSS of a fresh process'
    tall, naive = results['tallformer'], results['naive']
    print(f"TALLFormer vs naive end-to-end training step, preset {args.preset}: "
          f"{preset['config']}, window {preset['window']} frames = {tall['n_chunks']} chunks, "
          f"batch {preset['batch']}, crop {preset['crop']}, amp {preset['amp']}; {where}; "
          f"median of {args.steps} steps after a warm-up; memory = {kind}\n")
    print('| variant | chunks through backbone per window | step time (s) | peak memory (MiB) '
          '| step memory (MiB) |')
    print('|---|---:|---:|---:|---:|')
    if baseline is not None:
        print(f"| baseline (model, optimizer, bank, batch; no step) | 0 | - | "
              f"{baseline['max_rss_mib']:.0f} | 0 |")
    mem = {}
    for name in ('tallformer', 'naive'):
        r = results[name]
        mem[name] = memory_columns(r, baseline, args.device)
        print(f"| {name} | {r['chunks']} / {r['n_chunks']} | {r['step_time']:.3f} | "
              f"{mem[name][0]:.0f} | {mem[name][1]:.0f} |")
    mem_ratio = mem['tallformer'][1] / mem['naive'][1]
    time_ratio = tall['step_time'] / naive['step_time']
    print(f'\n| ratio tallformer / naive | value | goal |\n|---|---:|---:|\n'
          f'| step memory | {mem_ratio:.3f} ({verdict(mem_ratio, MEMORY_GOAL)}) '
          f'| <= {MEMORY_GOAL} |\n'
          f'| step time | {time_ratio:.3f} ({verdict(time_ratio, TIME_GOAL)}) '
          f'| <= {TIME_GOAL} |')
    print(f"\n(peak memory ratio including the fixed part: "
          f"{mem['tallformer'][0] / mem['naive'][0]:.3f}; per-step times (s): "
          f"tallformer {[round(t, 3) for t in tall['times']]}, "
          f"naive {[round(t, 3) for t in naive['times']]})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='demo')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads per process')
    parser.add_argument('--steps', type=int, default=None,
                        help='timed steps per variant (default: per preset)')
    parser.add_argument('--worker', choices=['baseline', *VARIANTS], help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    args.steps = args.steps or preset['steps']
    if args.worker:
        return run_worker(args)
    if args.device != 'cuda' and preset['gpu_only']:
        print(f'preset {args.preset} needs a CUDA GPU (Swin at {preset["crop"]}x'
              f'{preset["crop"]}, batch {preset["batch"]}, bf16) and runs with --device cuda '
              f'only; device is {args.device}: skipped. Use --preset demo on CPU.')
        return
    baseline = spawn(args, 'baseline') if args.device != 'cuda' else None
    results = {name: spawn(args, name) for name in VARIANTS}
    report(args, results, baseline)


if __name__ == '__main__':
    main()
