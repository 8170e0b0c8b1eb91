"""Re-encode videos so each has at most --max-frames frames at --resolution.

Long videos get a proportionally lower frame rate (ActivityNet: 768 frames per video).
Resumable: outputs are renamed into place when complete and skipped on a rerun.

    python tools/data/anet/transform_videos.py --video_dir raw --output_dir videos_768 \
        --resolution 256x256 --max-frames 768 --workers 8
"""
import argparse
import sys

from vedatad.data.video_jobs import reencode_folder


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'resolution must look like 256x256, got {text!r}')
    return w, h


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--video_dir', '--video-dir', required=True)
    parser.add_argument('--output_dir', '--output-dir', required=True)
    parser.add_argument('--resolution', type=parse_size, default=(256, 256))
    parser.add_argument('--max-frames', '--max_frames', type=int, default=768)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    summary = reencode_folder(args.video_dir, args.output_dir, workers=args.workers,
                              progress=not args.no_progress, size=args.resolution,
                              max_frames=args.max_frames)
    print(summary.report())
    return 1 if summary.failed else 0


if __name__ == '__main__':
    sys.exit(main())
