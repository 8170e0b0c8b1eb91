"""TALLFormer training step vs the naive end-to-end step: peak memory and step time.

Both variants train the same model (Video Swin on 32-frame chunks, Temporal Consistency
Module, ActionFormer head; forward + backward + AdamW step) with the backbone set up as in
the Swin-B THUMOS config (``configs/tallformer/thumos_swin_b_256_crop224.py``): activation
checkpointing of the trainable blocks and stages 1-2 frozen, whatever the preset's own
config says, so the comparison is the one a user faces.

- ``tallformer``: the bank-backed training batch the data pipeline builds: ``keep_ratio``
  0.15, so ``floor(n_chunks * 0.15)`` (at least 1) fresh chunks per window as uint8 pixels,
  the other chunks' features as float16 from the memory bank; the fresh chunks are written
  back into the (temporary) bank, as in training.
- ``naive``: the real naive end-to-end step: the whole window as uint8 pixels, every chunk
  through the backbone with gradients, then the same TCM, head and losses; no memory bank
  at all (no reads, no writes).

Weights are random (``pretrained=None``): speed and memory do not depend on their values.

Measurement (variants alternate, ``--rounds`` rounds, each run a fresh subprocess):
- step time: median of ``--steps`` steps after one warm-up step (allocations, AdamW state).
- CPU memory: max RSS of the run minus the max RSS of a baseline subprocess that builds the
  same model, optimizer and bank but neither batch nor step: the step's own memory (the
  batch the loader hands over, activations, gradients, AdamW state, bank I/O buffers),
  as on a GPU, where the batch has to come to the device. The smallest value over the
  rounds is reported (RSS only grows by noise: other allocations, page-cache effects).
- GPU memory: ``torch.cuda.max_memory_allocated`` over the timed steps (after the warm-up,
  so AdamW state exists); "step memory" is that peak minus what was allocated before the
  steps (parameters, AdamW state, batch); the absolute peak per GPU is what the original
  TALLFormer puts at 12 GB for Swin-B, 480 frames, batch 4.
- GPU presets also report the step rate (samples/s per GPU) against the bank-backed data
  loader's rate at the same shape (``bench_e2e_data.py``'s synthetic THUMOS-shaped frame
  folders, ``--loader-workers`` workers): the loader must keep up with the GPU.

    python benchmarks/bench_tallformer.py                      # demo preset, CPU
    python benchmarks/bench_tallformer.py --preset thumos_swin_b --steps 5   # GPU only
"""
import argparse
import json
import math
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

from vedatad.data.bank_windows import BankChunkWriter
from vedatad.data.chunk_sampling import num_fresh_chunks
from vedatad.membank import MemoryBank
from vedatad.registry import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs', 'tallformer')
MEMORY_GOAL, TIME_GOAL = 0.25, 0.30
GPU_CLAIM_GIB = 12.0  # the original TALLFormer's Swin-B THUMOS setting, per GPU
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
# the backbone set-up of the Swin-B THUMOS config, applied to every preset
REAL_RUN_BACKBONE = {'model.backbone.with_cp': True, 'model.backbone.frozen_stages': 2}

PRESETS = {
    # tiny Video Swin on 56x56 crops: sized for a 2-core CPU
    'demo': dict(config='demo_tiny.py', window=480, batch=2, crop=56, amp=None,
                 gpu_only=False, steps=5),
    # the original "12 GB" THUMOS14 setting: Swin-B, 224 crops, stages 1-2 frozen, with_cp
    'thumos_swin_b': dict(config='thumos_swin_b_256_crop224.py', window=480, batch=4,
                          crop=224, frames=256, feat_dim=1024, amp='bf16', gpu_only=True,
                          steps=5),
    'thumos_swin_t': dict(config='thumos_swin_t_128_crop112.py', window=480, batch=4,
                          crop=112, frames=128, feat_dim=768, amp='bf16', gpu_only=True,
                          steps=5),
}
VARIANTS = ('tallformer', 'naive')
KEEP_RATIO = 0.15


# ------------------------------------------------------------------ setup
def build(preset, device):
    """The preset's TALLFormer with the window-dependent sizes set for ``preset['window']``
    and the backbone as in the Swin-B THUMOS config."""
    cfg = Config.fromfile(os.path.join(CONFIGS, preset['config']))
    steps = preset['window'] // 8  # 2 frames per Swin row x TCM stride 4
    cfg.merge_from_dict({'model.backbone.pretrained': None, 'model.membank.template': None,
                         'model.membank.path': None, 'model.tcm.max_len': steps,
                         'model.detector.max_seq_len': steps, **REAL_RUN_BACKBONE})
    return build_model(cfg.model.to_dict()).to(device), cfg.model.detector.num_classes


def make_bank(path, model, num_videos, num_frames):
    """A bank with random features for every video (the TALLFormer variant's stale chunks
    and write-back target)."""
    bank = MemoryBank.create(path, feat_dim=model.feat_dim, backbone='bench',
                             frames_per_chunk=model.chunk_size)
    rng = np.random.default_rng(0)
    for v in range(num_videos):
        vid = f'video{v}'
        bank.add_video(vid, num_frames)
        ids = list(range(bank.num_chunks(vid)))
        feats = rng.standard_normal((len(ids), bank.rows_per_chunk, bank.feat_dim))
        bank.write_chunks(vid, ids, feats.astype(np.float32), step=-1)
        bank.mark_complete(vid)
    return bank


def make_batch(variant, preset, num_classes, num_frames, chunk_size, bank):
    """One training batch as ``collate_video_windows`` builds it, window-relative frames."""
    B, W, S = preset['batch'], preset['window'], preset['crop']
    n = W // chunk_size
    g = torch.Generator().manual_seed(0)
    segments, labels = [], []
    for _ in range(B):
        starts = torch.rand(3, generator=g) * (W - 100)
        segments.append(torch.stack([starts, starts + 20 + torch.rand(3, generator=g) * 70], 1))
        labels.append(torch.randint(0, num_classes, (3,), generator=g))
    n_first = num_frames // chunk_size - n + 1
    offsets = torch.randint(0, n_first, (B,), generator=g) * chunk_size
    metas = [dict(video_id=f'video{b}', fps=15.0, duration=num_frames / 15.0,
                  num_frames=num_frames, window_size=W) for b in range(B)]
    batch = dict(masks=torch.ones(B, W, dtype=torch.bool), frame_offsets=offsets,
                 video_index=torch.arange(B), metas=metas, gt_segments=segments,
                 gt_labels=labels, pixel_mean=torch.tensor(MEAN), pixel_std=torch.tensor(STD))
    if variant == 'naive':
        batch['imgs'] = torch.randint(0, 256, (B, 3, W, S, S), generator=g, dtype=torch.uint8)
        return batch
    k = num_fresh_chunks(n, KEEP_RATIO)
    fresh = [torch.randperm(n, generator=g)[:k].sort().values for _ in range(B)]
    feats = []
    for b, picks in enumerate(fresh):
        window = bank.read_chunks(f'video{b}', range(int(offsets[b]) // chunk_size,
                                                     int(offsets[b]) // chunk_size + n))
        window[picks.numpy()] = 0
        feats.append(torch.from_numpy(window))
    batch.update(fresh_imgs=torch.randint(0, 256, (B * k, 3, chunk_size, S, S), generator=g,
                                          dtype=torch.uint8),
                 fresh_index=torch.cat([b * n + p for b, p in enumerate(fresh)]),
                 fresh_chunks=fresh, bank_feats=torch.stack(feats),
                 bank_steps=torch.full((B, n), -1, dtype=torch.long))
    return batch


# ------------------------------------------------------------------ one variant
def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def naive_loss(model, batch, device):
    """Every chunk through the backbone with gradients, then TCM, head and losses."""
    masks = batch['masks'].to(device)
    feats, step_mask = model.extract_window_features(batch['imgs'].to(device), masks, batch)
    gt = [model.frames_to_steps(s.to(device)) for s in batch['gt_segments']]
    labels = [l.to(device) for l in batch['gt_labels']]
    return model.detector.forward_feats_loss(feats, step_mask, gt, labels)['final_loss']


def train_step(variant, model, optimizer, batch, amp, device):
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(amp)
    with torch.autocast('cuda', dtype=dtype, enabled=bool(amp) and device.type == 'cuda'):
        if variant == 'naive':
            loss = naive_loss(model, batch, device)
        else:
            loss = model(batch, mode='loss')['final_loss']
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def run_worker(args):
    """Build everything; unless this is a baseline, warm up and time ``steps`` steps.
    Prints one JSON line."""
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    device = torch.device(args.device)
    baseline = args.worker == 'baseline'
    variant = 'tallformer' if baseline else args.worker
    torch.manual_seed(0)
    model, num_classes = build(preset, device)
    model.train()
    num_frames = 2 * preset['window']  # windows start anywhere in a video twice as long
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    n_chunks = preset['window'] // model.chunk_size
    chunks = n_chunks if variant == 'naive' else num_fresh_chunks(n_chunks, KEEP_RATIO)
    out = dict(variant=args.worker, chunks=0 if baseline else chunks, n_chunks=n_chunks)
    with tempfile.TemporaryDirectory(prefix='bench_tallformer_') as tmp:
        bank = make_bank(os.path.join(tmp, 'bank'), model, preset['batch'], num_frames)
        model.attach_bank_writer(BankChunkWriter(bank) if variant == 'tallformer' else None)
        if not baseline:  # the batch is what the loader hands to the step: step memory
            batch = make_batch(variant, preset, num_classes, num_frames, model.chunk_size, bank)
            out['batch_mib'] = sum(v.numel() * v.element_size() for v in batch.values()
                                   if torch.is_tensor(v)) / 2**20
            out.update(measure(variant, model, optimizer, batch, preset['amp'], device,
                               args.steps))
    out['max_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    print('RESULT ' + json.dumps(out), flush=True)


def measure(variant, model, optimizer, batch, amp, device, steps):
    train_step(variant, model, optimizer, batch, amp, device)  # warm-up: AdamW state
    sync(device)
    if device.type == 'cuda':
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps):
        model.on_train_iter_start(i + 1)
        sync(device)
        start = time.perf_counter()
        train_step(variant, model, optimizer, batch, amp, device)
        sync(device)
        times.append(time.perf_counter() - start)
    out = dict(step_time=statistics.median(times), times=times)
    if device.type == 'cuda':
        out.update(gpu_peak_mib=torch.cuda.max_memory_allocated(device) / 2**20,
                   gpu_reserved_mib=torch.cuda.max_memory_reserved(device) / 2**20,
                   gpu_before_mib=before / 2**20)
    return out


# ------------------------------------------------------------------ driver
def spawn(args, worker):
    """Run one measurement in a fresh interpreter (a clean max RSS / CUDA allocator)."""
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', worker,
           '--preset', args.preset, '--threads', str(args.threads), '--steps', str(args.steps),
           '--device', args.device]
    for key in ('window', 'batch', 'crop'):
        if getattr(args, key):
            cmd += [f'--{key}', str(getattr(args, key))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    if proc.returncode or not lines:
        sys.exit(f'{worker} measurement failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def step_memory(run, baseline, device):
    """(peak MiB, step MiB): absolute peak and the part the step itself adds."""
    if device == 'cuda':
        return run['gpu_peak_mib'], run['gpu_peak_mib'] - run['gpu_before_mib']
    return run['max_rss_mib'], run['max_rss_mib'] - baseline['max_rss_mib']


def verdict(ratio, goal):
    return 'met' if ratio <= goal else 'NOT met'


def collect(args):
    """Alternate the variants over the rounds; per variant the runs and their memory."""
    runs = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        base = spawn(args, 'baseline') if args.device != 'cuda' else None
        for variant in VARIANTS:
            run = spawn(args, variant)
            run['memory'] = step_memory(run, base, args.device)
            run['baseline'] = base
            runs[variant].append(run)
    return runs


def report(args, runs):
    preset = PRESETS[args.preset]
    where = torch.cuda.get_device_name(0) if args.device == 'cuda' else \
        f'CPU, {args.threads} thread(s)'
    kind = ('max_memory_allocated' if args.device == 'cuda'
            else 'max RSS of a fresh process minus a baseline process that takes no step')
    first = runs['tallformer'][0]
    print(f"TALLFormer vs naive end-to-end training step, preset {args.preset}: "
          f"{preset['config']} with activation checkpointing and stages 1-2 frozen (as the "
          f"Swin-B THUMOS config), window {preset['window']} frames = {first['n_chunks']} "
          f"chunks, batch {preset['batch']}, crop {preset['crop']}, amp {preset['amp']}; "
          f"{where}; median of {args.steps} steps after a warm-up, {args.rounds} alternating "
          f"round(s); memory = {kind}\n")
    print('| variant | chunks through backbone per window | batch (MiB) | step time (s) '
          '| peak memory (MiB) | step memory (MiB) |')
    print('|---|---:|---:|---:|---:|---:|')
    best = {}
    for name in VARIANTS:
        rs = runs[name]
        mem = min(r['memory'][1] for r in rs)
        peak = min(r['memory'][0] for r in rs)
        t = statistics.median([r['step_time'] for r in rs])
        best[name] = dict(mem=mem, peak=peak, time=t)
        print(f"| {name} | {rs[0]['chunks']} / {rs[0]['n_chunks']} | {rs[0]['batch_mib']:.1f} | "
              f"{t:.3f} | {peak:.0f} | {mem:.0f} |")
    mem_ratio = best['tallformer']['mem'] / best['naive']['mem']
    time_ratio = best['tallformer']['time'] / best['naive']['time']
    print(f'\n| ratio tallformer / naive | value | goal |\n|---|---:|---:|\n'
          f'| step memory | {mem_ratio:.3f} ({verdict(mem_ratio, MEMORY_GOAL)}) '
          f'| <= {MEMORY_GOAL} |\n'
          f'| step time | {time_ratio:.3f} ({verdict(time_ratio, TIME_GOAL)}) '
          f'| <= {TIME_GOAL} |')
    for name in VARIANTS:
        print(f"({name}: step memory per round {[round(r['memory'][1]) for r in runs[name]]} "
              f"MiB, step times {[round(x, 3) for r in runs[name] for x in r['times']]} s)")
    if args.device == 'cuda':
        gpu_report(args, preset, runs)


def gpu_report(args, preset, runs):
    """Absolute memory per GPU against the original's claim; GPU step rate vs loader rate."""
    tall = runs['tallformer']
    peak = max(r['gpu_peak_mib'] for r in tall) / 1024
    reserved = max(r['gpu_reserved_mib'] for r in tall) / 1024
    print(f"\nTALLFormer step, {preset['config']} at batch {preset['batch']}: peak allocated "
          f'{peak:.2f} GiB, peak reserved {reserved:.2f} GiB per GPU (original TALLFormer: '
          f'{GPU_CLAIM_GIB:g} GB) -> {"within" if reserved <= GPU_CLAIM_GIB else "ABOVE"} the '
          'claim')
    step = statistics.median([r['step_time'] for r in tall])
    gpu_rate = preset['batch'] / step
    print(f'GPU step rate: {gpu_rate:.2f} samples/s per GPU ({step:.3f} s per step of '
          f"{preset['batch']})")
    if args.loader_workers <= 0:
        return
    size = preset['frames']
    loader = loader_rate(args.loader_workers, size, preset['crop'], preset['feat_dim'])
    per_worker = loader / args.loader_workers
    need = math.ceil(gpu_rate / per_worker) if per_worker > 0 else float('inf')
    print(f'bank-backed loader at the same shape ({args.loader_workers} workers, synthetic '
          f'{size}x{size} JPEG frame folders, crop {preset["crop"]}): {loader:.2f} samples/s -> '
          f'{"keeps up with" if loader >= gpu_rate else "SLOWER than"} the GPU; about {need} '
          f'worker(s) per GPU needed')


def loader_rate(workers, size, crop, feat_dim):
    """Samples/s of the bank-backed loader (480-frame windows, keep 0.15) on synthetic
    frame folders of ``size`` px cropped to ``crop``, bank of ``feat_dim`` float16."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_e2e_data as data_bench
    with tempfile.TemporaryDirectory(prefix='bench_tallformer_loader_') as tmp:
        from pathlib import Path
        root = Path(tmp)
        data_bench.make_videos(root, 3, 64.0, 32, size=size)
        ds = data_bench.build_dataset(root, 'frames', True, size=size, crop=crop)
        ds.attach_bank(data_bench.make_bank(root / 'bank', ds, feat_dim))
        rate, _ = data_bench.loader_rate(ds, workers, max(4 * workers, 8))
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), default='demo')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=1, help='CPU threads per process')
    parser.add_argument('--steps', type=int, default=None,
                        help='timed steps per variant (default: per preset)')
    parser.add_argument('--rounds', type=int, default=2, help='alternating rounds')
    parser.add_argument('--loader-workers', type=int, default=6,
                        help='GPU presets: DataLoader workers of the loader-rate check (0: skip)')
    parser.add_argument('--window', type=int, help='override the preset: frames per window')
    parser.add_argument('--batch', type=int, help='override the preset: windows per step')
    parser.add_argument('--crop', type=int, help='override the preset: crop size')
    parser.add_argument('--worker', choices=[*VARIANTS, 'baseline'],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    shape = {k: getattr(args, k) for k in ('window', 'batch', 'crop') if getattr(args, k)}
    preset.update(shape)  # a smaller shape of the same model (e.g. a smaller GPU or a smoke run)
    args.steps = args.steps or preset['steps']
    if args.worker:
        return run_worker(args)
    if args.device != 'cuda' and preset['gpu_only'] and not shape:
        print(f'preset {args.preset} needs a CUDA GPU (Swin at {preset["crop"]}x'
              f'{preset["crop"]}, batch {preset["batch"]}, {preset["amp"]}) and runs with '
              f'--device cuda only; device is {args.device}: skipped. It would report: step '
              'memory and time of TALLFormer vs the naive step (ratios against the goals), '
              f'the TALLFormer peak memory per GPU against the original {GPU_CLAIM_GIB:g} GB, '
              'and the GPU step rate against the bank-backed loader rate. Use --preset demo '
              'on CPU.')
        return
    report(args, collect(args))


if __name__ == '__main__':
    main()
