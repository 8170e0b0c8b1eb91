"""TALLFormer training data path: whole-window decoding (the earlier path) vs bank-backed
windows (decode only the fresh chunks, stale chunks read from the bank in the workers).

Real THUMOS14 shape: 480-frame windows (15 chunks of 32 frames, 2 fresh = keep_ratio 0.15)
of 256x256 videos at 15 fps, random crop 224, flip and photometric distortion, memory bank
C = 1024 float16. Two sources of the same synthetic videos: JPEG frame folders (as
``tools/data/extract_frames.py`` writes them) and mp4 files (``--gop`` frames between
keyframes; decord seeks to the keyframe before each fresh chunk).

Measured, per sample:
- frames decoded (returned by the reader) vs frames of the fresh chunks; for mp4 also the
  frames the decoder walks from the previous keyframe (estimated from the key frame index);
- bytes handed to the model (every tensor of the item), and bytes the training process
  itself reads from the bank (the earlier path read the stale window there, synchronously);
- loader samples/s with 1 and 2 DataLoader workers (batch 1, after the first batch);
- a CPU training step with the demo backbone at the same shape (bank C = 128, the demo
  backbone's size): loader with 1 worker + forward/backward/AdamW at batch ``--batch``,
  per-iteration wall time.

The earlier path is rebuilt from the same transforms with the earlier options: the whole
window decoded, photometric distortion and normalisation in float32 on the worker, and the
training process choosing the fresh chunks and reading the stale window from the bank
(float32) before the step. Both paths then run the same model code, so the step ratio
measures the data path. Timing is noisy on a shared machine: variants alternate and ratios
are what to compare.

    python benchmarks/bench_e2e_data.py [--samples 6] [--steps 4] [--gop 32]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from torch.utils.data import DataLoader, Dataset

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.data import video_readers
from vedatad.data.bank_windows import BankChunkWriter
from vedatad.data.chunk_sampling import select_fresh_chunks
from vedatad.data.ffmpeg import extract_frames
from vedatad.data.synthetic_videos import class_style, encode_video, render_video
from vedatad.data.video_dataset import VideoDataset, collate_video_windows
from vedatad.membank import MemoryBank
from vedatad.registry import build_model
from vedatad.utils.allocator import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
WINDOW, CHUNK, KEEP, SIZE, CROP, FPS = 480, 32, 0.15, 256, 224, 15
GOALS = dict(decode=1.1, bytes=0.15, loader=5.0, step=0.5)


# ------------------------------------------------------------------ data
def make_videos(root, num_videos, seconds, gop, size=SIZE):
    """Synthetic size x size videos as mp4 files and JPEG frame folders, annotations JSON."""
    database = {}
    for i in range(num_videos):
        frames, segments = render_video(i, 7, seconds, size, 3, FPS)
        vid = f'video{i}'
        (root / 'mp4').mkdir(parents=True, exist_ok=True)
        encode_video(frames, root / 'mp4' / f'{vid}.mp4', FPS, gop=gop)
        extract_frames(root / 'mp4' / f'{vid}.mp4', root / 'frames' / vid)
        database[vid] = dict(subset='training', duration=len(frames) / FPS, annotations=[
            dict(segment=[f0 / FPS, f1 / FPS], label=class_style(k)[0]) for f0, f1, k in segments])
    (root / 'ann.json').write_text(json.dumps(dict(database=database)))


def make_bank(path, dataset, feat_dim):
    bank = MemoryBank.create(path, feat_dim=feat_dim, backbone='bench')
    rng = np.random.default_rng(0)
    for i, video in enumerate(dataset.videos):
        vid = video.video_id
        bank.add_video(vid, dataset.open(i).num_frames)
        n = bank.num_chunks(vid)
        bank.write_chunks(vid, list(range(n)),
                          rng.standard_normal((n, bank.rows_per_chunk, feat_dim)), step=-1)
        bank.mark_complete(vid)
    return bank


def build_dataset(root, source, fresh, size=SIZE, crop=CROP):
    cfg = dict(short_side=size, crop_size=crop, min_coverage=0.75, photometric=True)
    if fresh:
        cfg.update(keep_ratio=KEEP, chunk_sampling='random')
    return VideoDataset(root / 'ann.json', root / source, subset='training', mode='train',
                        window_size=WINDOW, chunk_size=CHUNK, pipeline_cfg=cfg)


class Passes(Dataset):
    """``samples`` items cycling over the videos, each pass with another epoch seed (new
    windows, chunks and augmentations), as an epoch loop would draw them."""

    def __init__(self, dataset, samples):
        self.dataset, self.samples = dataset, samples

    def __len__(self):
        return self.samples

    def __getitem__(self, i):
        self.dataset.set_epoch_seed(1000 + i // len(self.dataset))
        return self.dataset[i % len(self.dataset)]


# ------------------------------------------------------------------ per-sample counts
def item_bytes(item):
    return sum(v.numel() * v.element_size() for v in item.values() if torch.is_tensor(v))


def decoder_walk(reader, indices):
    """Frames decord decodes for sorted ``indices``: from the keyframe at or before each
    jump, then one by one (its seek-accurate access)."""
    keys = np.asarray(reader._vr.get_key_indices())
    walked, current = 0, None
    for i in np.unique(indices):
        if current is not None and i == current + 1:
            walked += 1
        else:
            key = keys[keys <= i].max() if (keys <= i).any() else 0
            walked += int(i - key + 1)
        current = i
    return walked


def count_per_sample(dataset, bank, samples):
    """Mean frames decoded, fresh frames, decoder walk (mp4) and bytes per sample."""
    decoded, walked = [], []
    real_read = video_readers.VideoReader.read

    def counting_read(reader, indices):
        decoded.append(len(indices))
        if isinstance(reader, video_readers.DecordReader):
            walked.append(decoder_walk(reader, np.asarray(indices)))
        return real_read(reader, indices)

    video_readers.VideoReader.read = counting_read
    try:
        fresh_frames, sizes, bank_bytes = [], [], []
        rng = np.random.default_rng(0)
        for i in range(samples):
            item = Passes(dataset, samples)[i]
            sizes.append(item_bytes(item))
            if 'fresh_imgs' in item:
                fresh_frames.append(sum(int(item['masks'][CHUNK * c:CHUNK * (c + 1)].sum())
                                        for c in item['fresh_chunks'].tolist()))
                bank_bytes.append(0)
            else:  # the earlier path picked the chunks and read the window in the model
                picks = earlier_picks(item, rng)
                fresh_frames.append(sum(int(item['masks'][CHUNK * c:CHUNK * (c + 1)].sum())
                                        for c in picks))
                bank_bytes.append(WINDOW // CHUNK * bank.rows_per_chunk * bank.feat_dim * 4)
    finally:
        video_readers.VideoReader.read = real_read
    return dict(decoded=np.mean(decoded), fresh=np.mean(fresh_frames),
                walked=np.mean(walked) if walked else None, bytes=np.mean(sizes),
                bank_bytes=np.mean(bank_bytes))


# ------------------------------------------------------------------ the earlier path
def earlier_picks(item, rng):
    n = WINDOW // CHUNK
    valid = int(np.ceil(float(item['masks'].sum()) / CHUNK))
    return select_fresh_chunks(n, KEEP, 'random', rng, valid)


def earlier_to_bank_batch(batch, bank, rng):
    """What the earlier model did in its forward pass: choose the fresh chunks, read the
    whole stale window from the bank (float32, synchronous), slice the fresh chunks out of
    the decoded window. Returns the batch the model consumes."""
    B, _, W, H, Wd = batch['imgs'].shape
    n = W // CHUNK
    picks, stale, steps = [], [], []
    for b, meta in enumerate(batch['metas']):
        valid = int(np.ceil(float(batch['masks'][b].sum()) / CHUNK))
        picks.append(torch.from_numpy(select_fresh_chunks(n, KEEP, 'random', rng, valid)))
        first = int(batch['frame_offsets'][b]) // CHUNK
        stale.append(torch.from_numpy(bank.read_window(meta['video_id'], first, n))
                     .view(n, bank.rows_per_chunk, bank.feat_dim))
        steps.append(torch.from_numpy(bank.read_steps(meta['video_id'], first, n)))
    chunks = batch['imgs'].view(B, 3, n, CHUNK, H, Wd).transpose(1, 2)  # a view
    b_idx = torch.cat([torch.full((len(p),), b) for b, p in enumerate(picks)])
    c_idx = torch.cat(picks)
    out = dict(batch, fresh_imgs=chunks[b_idx, c_idx], fresh_index=b_idx * n + c_idx,
               fresh_chunks=picks, bank_feats=torch.stack(stale), bank_steps=torch.stack(steps))
    del out['imgs']
    return out


# ------------------------------------------------------------------ timing
def loader_rate(dataset, workers, samples):
    """Samples/s of a DataLoader (batch 1) after its first batch; seconds to the first."""
    loader = DataLoader(Passes(dataset, samples), batch_size=1, num_workers=workers,
                        collate_fn=collate_video_windows, persistent_workers=False)
    start = time.perf_counter()
    first = None
    for k, _ in enumerate(loader):
        if k == 0:
            first = time.perf_counter()
    end = time.perf_counter()
    return (samples - 1) / (end - first), first - start


def demo_model():
    cfg = Config.fromfile(str(REPO / 'configs' / 'tallformer' / 'demo_tiny.py'))
    steps = WINDOW // 8
    cfg.merge_from_dict({'model.tcm.max_len': steps, 'model.detector.max_seq_len': steps})
    return build_model(cfg.model.to_dict())


def step_times(dataset, bank, earlier, steps, batch_size):
    """Per-iteration wall time of loader (1 worker) + training step."""
    torch.manual_seed(0)
    model = demo_model().train()
    model.attach_bank_writer(BankChunkWriter(bank))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loader = DataLoader(Passes(dataset, (steps + 1) * batch_size), batch_size=batch_size,
                        num_workers=1, collate_fn=collate_video_windows)
    rng = np.random.default_rng(0)
    times, compute, last = [], [], None
    for it, batch in enumerate(loader):
        start = time.perf_counter()
        if earlier:
            batch = earlier_to_bank_batch(batch, bank, rng)
        model.on_train_iter_start(it)
        loss = model(batch, mode='loss')['final_loss']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        if last is not None:  # from the end of one step to the end of the next
            times.append(now - last)
            compute.append(now - start)  # the training process's own work, no waiting
        last = now
    return times, compute


# ------------------------------------------------------------------ report
def verdict(ok):
    return 'met' if ok else 'NOT met'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--videos', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=64.0)
    parser.add_argument('--samples', type=int, default=6, help='samples per loader timing')
    parser.add_argument('--steps', type=int, default=4, help='timed training steps per path')
    parser.add_argument('--gop', type=int, default=32, help='mp4 keyframe interval (frames)')
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--threads', type=int, default=1, help='torch threads (main process)')
    parser.add_argument('--batch', type=int, default=2, help='training-step batch size')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the allocator setting of tools/trainval.py
    with tempfile.TemporaryDirectory(prefix='bench_e2e_data_') as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_videos(root, args.videos, args.seconds, args.gop)
        print(f'{args.videos} synthetic videos of {args.seconds:g} s at {FPS} fps, {SIZE}x{SIZE} '
              f'(mp4 GOP {args.gop}; JPEG frame folders), made in {time.perf_counter() - t0:.0f} s;'
              f' window {WINDOW} frames = {WINDOW // CHUNK} chunks, keep {KEEP} '
              f'-> {select_fresh_chunks(WINDOW // CHUNK, KEEP).size} fresh; crop {CROP}; '
              f'bank C=1024 float16; torch threads {args.threads}; {os.cpu_count()} CPUs\n')
        rows, rates = {}, {}
        for source in ('frames', 'mp4'):
            paths = {name: build_dataset(root, source, name == 'bank-backed')
                     for name in ('earlier', 'bank-backed')}
            bank = make_bank(root / f'bank1024_{source}', paths['earlier'], 1024)
            paths['bank-backed'].attach_bank(bank)
            for name, ds in paths.items():
                rows[source, name] = count_per_sample(ds, bank, min(args.samples, 6))
            for workers in args.workers:  # alternate the paths
                for name, ds in paths.items():
                    rates[source, name, workers] = loader_rate(ds, workers, args.samples)
        print('| source | path | frames decoded | fresh frames | decoded / fresh | decoder '
              'walk (mp4) | MB to the model | MB read from the bank in the training process |')
        print('|---|---|---:|---:|---:|---:|---:|---:|')
        for (source, name), r in rows.items():
            walk = f"{r['walked']:.0f}" if r['walked'] is not None else '-'
            print(f"| {source} | {name} | {r['decoded']:.0f} | {r['fresh']:.0f} | "
                  f"{r['decoded'] / r['fresh']:.2f} | {walk} | {r['bytes'] / 2**20:.1f} | "
                  f"{r['bank_bytes'] / 2**20:.2f} |")
        print('\n| source | path | workers | loader samples/s | s to the first sample |')
        print('|---|---|---:|---:|---:|')
        for (source, name, workers), (rate, first) in rates.items():
            print(f'| {source} | {name} | {workers} | {rate:.2f} | {first:.1f} |')

        # training step: the demo backbone (C = 128) at the same shape, frame folders
        paths = {name: build_dataset(root, 'frames', name == 'bank-backed')
                 for name in ('earlier', 'bank-backed')}
        bank = make_bank(root / 'bank128', paths['earlier'], 128)
        paths['bank-backed'].attach_bank(bank)
        steps = {name: [] for name in paths}
        own = {name: [] for name in paths}
        for _ in range(2):  # alternate, two rounds
            for name, ds in paths.items():
                t, c = step_times(ds, bank, name == 'earlier', max(1, args.steps // 2),
                                  args.batch)
                steps[name] += t
                own[name] += c
        med = {name: statistics.median(t) for name, t in steps.items()}
        print(f'\n| training step (demo backbone, frame folders, loader 1 worker, batch '
              f'{args.batch}) | s per iteration (median) | of which the training process\'s '
              'own work (median) | all iterations |')
        print('|---|---:|---:|---|')
        for name, t in steps.items():
            print(f'| {name} | {med[name]:.2f} | {statistics.median(own[name]):.2f} | '
                  f'{[round(x, 2) for x in t]} |')
        print('(an iteration waits for the loader only when the loader is slower than the '
              "training process's own work: there the data path shows in the step time)")

        print('\n| ratio (bank-backed / earlier) | source | value | goal |')
        print('|---|---|---:|---:|')
        for source in ('frames', 'mp4'):
            old, new = rows[source, 'earlier'], rows[source, 'bank-backed']
            ratio = new['decoded'] / new['fresh']
            print(f"| frames decoded / fresh frames (earlier: {old['decoded'] / old['fresh']:.2f})"
                  f" | {source} | {ratio:.2f} ({verdict(ratio <= GOALS['decode'])}) "
                  f"| <= {GOALS['decode']} |")
            ratio = new['bytes'] / (old['bytes'] + old['bank_bytes'])
            print(f"| bytes per sample | {source} | {ratio:.4f} "
                  f"({verdict(ratio <= GOALS['bytes'])}) | <= {GOALS['bytes']} |")
            for workers in args.workers:
                ratio = rates[source, 'bank-backed', workers][0] / \
                    rates[source, 'earlier', workers][0]
                print(f'| loader samples/s, {workers} worker(s) | {source} | {ratio:.1f}x '
                      f"({verdict(ratio >= GOALS['loader'])}) | >= {GOALS['loader']}x |")
        ratio = med['bank-backed'] / med['earlier']
        print(f"| training step time | frames | {ratio:.3f} ({verdict(ratio <= GOALS['step'])}) "
              f"| <= {GOALS['step']} |")


if __name__ == '__main__':
    sys.exit(main())
