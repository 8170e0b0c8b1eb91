"""Decode throughput (frames/s) of the video readers on one video.

    python benchmarks/bench_decode.py [--video PATH] [--repeats 3] [--window 64]

Readers: decord on the video file, the frame-folder reader on JPEGs extracted from the
same video (all frames, same size), and the ffmpeg pipe. Three access patterns: the whole
video in order, random windows of --window frames starting on the 32-frame grid (what
whole-window training and testing read), and two random 32-frame chunks at a time (what
bank-backed training reads: the fresh chunks only). Without --video, the mmaction2 demo
fixture is used if present, else a synthetic 256x256 clip is generated.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vedatad.data.ffmpeg import extract_frames
from vedatad.data.video_readers import DecordReader, FFmpegReader, FrameFolderReader

FIXTURE = Path(__file__).resolve().parents[2] / 'shared/fixtures/videos/mmaction2_demo_28fps.mp4'


def default_video(tmp):
    if FIXTURE.is_file():
        return FIXTURE
    from vedatad.data.synthetic_videos import encode_video, render_video
    frames, _ = render_video(0, 0, 20, 256, 3, 15)
    path = Path(tmp) / 'synthetic_256.mp4'
    encode_video(frames, path, 15)
    return path


def windows(num_frames, window, count, seed=0):
    rng = np.random.default_rng(seed)
    last = max(num_frames - window, 0) // 32
    starts = rng.integers(0, last + 1, count) * 32
    return [np.arange(s, min(s + window, num_frames)) for s in starts]


def fresh_chunks(num_frames, count, chunks=2, seed=0):
    """What bank-backed training decodes: ``chunks`` random 32-frame chunks of the video
    (the fresh chunks of a window; the other chunks come from the memory bank)."""
    rng = np.random.default_rng(seed)
    total = max(num_frames // 32, 1)
    out = []
    for _ in range(count):
        picks = np.sort(rng.choice(total, size=min(chunks, total), replace=False))
        frames = (picks[:, None] * 32 + np.arange(32)[None]).reshape(-1)
        out.append(frames[frames < num_frames])
    return out


def rate(read, index_sets, repeats):
    """Median frames/s over ``repeats`` passes of reading every index set."""
    total = sum(len(i) for i in index_sets)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for indices in index_sets:
            read(indices)
        times.append(time.perf_counter() - start)
    return total / statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--video', default=None)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--window', type=int, default=64)
    parser.add_argument('--num-windows', type=int, default=4)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(args.video) if args.video else default_video(tmp)
        extract_frames(video, Path(tmp) / 'frames')  # every frame, source size, JPEG q2
        readers = {'decord (video file)': DecordReader(video),
                   'frame folder (JPEG)': FrameFolderReader(Path(tmp) / 'frames'),
                   'ffmpeg pipe (video file)': FFmpegReader(video)}
        n = readers['decord (video file)'].num_frames
        h, w = readers['decord (video file)'].height, readers['decord (video file)'].width
        patterns = {'whole video': [np.arange(n)],
                    f'{args.num_windows} random {args.window}-frame windows':
                        windows(n, args.window, args.num_windows),
                    f'{args.num_windows} x 2 random 32-frame chunks (fresh chunks)':
                        fresh_chunks(n, args.num_windows)}
        print(f'video: {video.name}, {n} frames, {w}x{h}, median of {args.repeats} runs')
        header = f"| reader | {' | '.join(patterns)} |"
        print(header)
        print('|' + '---|' * (len(patterns) + 1))
        for name, reader in readers.items():
            cells = [f'{rate(reader.read, sets, args.repeats):.0f} frames/s'
                     for sets in patterns.values()]
            print(f"| {name} | {' | '.join(cells)} |")


if __name__ == '__main__':
    main()
