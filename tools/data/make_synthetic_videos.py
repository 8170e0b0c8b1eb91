"""Write synthetic action videos (mp4) and their ActivityNet-style annotations.

    python tools/data/make_synthetic_videos.py data/synthetic --num-videos 24 --seconds 20

Creates OUT_DIR/videos/synthetic_XXXX.mp4 and OUT_DIR/annotations.json (subsets
'training' and 'validation').
"""
import argparse

from vedatad.data.synthetic_videos import make_synthetic_videos


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    parser.add_argument('--num-videos', type=int, default=24)
    parser.add_argument('--seconds', type=float, default=20)
    parser.add_argument('--size', type=int, default=128, help='frame side in pixels')
    parser.add_argument('--classes', type=int, default=3)
    parser.add_argument('--fps', type=float, default=15)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-fraction', type=float, default=2 / 3)
    parser.add_argument('--workers', type=int, default=1)
    args = parser.parse_args(argv)
    data = make_synthetic_videos(args.out_dir, args.num_videos, args.seconds, args.size,
                                 args.classes, args.seed, args.fps, args.train_fraction,
                                 args.workers, progress=True)
    num_segments = sum(len(v['annotations']) for v in data['database'].values())
    print(f'{len(data["database"])} videos, {num_segments} action segments -> {args.out_dir}')


if __name__ == '__main__':
    main()
