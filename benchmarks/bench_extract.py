"""Feature extraction throughput vs the backbone alone, on the same frames.

extract_features decodes in DataLoader workers while the backbone runs; the goal is that
decoding, cropping and bank writes hide behind the backbone: extract frames/s >= 0.9 x
backbone-only frames/s (same clip chunks, frames decoded up front for the latter).

    python benchmarks/bench_extract.py [--arch demo --crop 112 --videos 4 --seconds 20]
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config

from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.data.clip_source import ClipSegments
from vedatad.engine.extract import extract_features
from vedatad.models import build_backbone


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--arch', default='demo')
    p.add_argument('--crop', type=int, default=112)
    p.add_argument('--size', type=int, default=128, help='synthetic frame side')
    p.add_argument('--videos', type=int, default=4)
    p.add_argument('--seconds', type=float, default=20)
    p.add_argument('--workers', type=int, default=1)
    p.add_argument('--chunks-per-item', type=int, default=4)
    p.add_argument('--dir', default='workdir')
    return p.parse_args()


def config(args, folder):
    return Config(dict(
        data=dict(root=str(folder / 'videos'), ann_file=str(folder / 'annotations.json'),
                  subset=None, fps=15, crop_size=args.crop),
        backbone=dict(type='VideoSwin', arch=args.arch, drop_path_rate=0.0),
        bank=dict(path=str(folder / 'bank')),
        extract=dict(chunk_size=32, chunks_per_item=args.chunks_per_item,
                     num_workers=args.workers, device='auto')))


def backbone_only(args, cfg, video_ids):
    """frames/s of forward_chunks over the same segments, decoded beforehand."""
    source = ClipSegments(video_ids, cfg.data.root, args.crop, fps=15,
                          chunks_per_item=args.chunks_per_item)
    clips = [item['imgs'] for item in source]
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    model = build_backbone(dict(cfg.backbone)).to(device).eval()
    frames = sum(c.shape[1] for c in clips)
    with torch.no_grad():
        model.forward_chunks(clips[0][None].to(device), 32)  # warm-up
        start = time.perf_counter()
        for clip in clips:
            model.forward_chunks(clip[None].to(device), 32).cpu()
        seconds = time.perf_counter() - start
    return frames, seconds


def main():
    args = parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix='bench_extract_', dir=args.dir))
    try:
        data = make_synthetic_videos(folder, args.videos, args.seconds, args.size, seed=0)
        ids = list(data['database'])
        cfg = config(args, folder)
        # backbone-only before and after extraction: machine load drifts, average both
        frames_b, secs_1 = backbone_only(args, cfg, ids)
        summary = extract_features(cfg, progress=False)
        assert not summary.failed, summary.failed
        _, secs_2 = backbone_only(args, cfg, ids)
        secs_b = (secs_1 + secs_2) / 2
        fps_b, fps_e = frames_b / secs_b, summary.frames_per_second
        print(f'{args.videos} synthetic videos x {args.seconds:.0f} s at 15 fps, '
              f'{args.size}px, crop {args.crop}, VideoSwin {args.arch}, '
              f'{args.workers} decode worker(s), device '
              f'{"cuda" if torch.cuda.is_available() else "cpu"} '
              f'({torch.get_num_threads()} threads)')
        print('| run | frames | seconds | frames/s |')
        print('|---|---|---|---|')
        print(f'| backbone only (frames decoded beforehand; mean of a run before and one '
              f'after) | {frames_b} | {secs_b:.1f} | {fps_b:.1f} |')
        print(f'| extract_features (decode + backbone + bank) | {summary.frames} | '
              f'{summary.seconds:.1f} | {fps_e:.1f} |')
        print(f'ratio extract / backbone: {fps_e / fps_b:.2f} (goal >= 0.9)')
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()
