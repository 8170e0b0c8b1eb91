"""Extract the frames of every video in IN_DIR into OUT_DIR/<video name>/00001.jpg ...

Resumable: a folder with its meta.json (written last) is skipped, any other is redone.
Broken videos are not accepted silently: a video for which ffmpeg reports decode errors
(garbled data) or that yields fewer frames than its container promises (a truncated file)
fails beyond --max-decode-errors / --max-missing-frames and is reported with its counts
below them. The summary lists every video with its counts; exit status 1 if any failed.

    python tools/data/extract_frames.py data/thumos14/videos data/thumos14/frames \
        --fps 15 --size 256x256 --workers 8
"""
import argparse
import shlex
import sys

from vedatad.data.ffmpeg import DEFAULT_MAX_DECODE_ERRORS, DEFAULT_MAX_MISSING
from vedatad.data.video_jobs import extract_frames_folder


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like 256x256, got {text!r}')
    return w, h


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('in_dir')
    parser.add_argument('out_dir')
    parser.add_argument('--fps', type=float, default=None,
                        help='output frame rate (default: keep every source frame)')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--size', type=parse_size, help='WxH, e.g. 256x256')
    size.add_argument('--short-side', type=int, help='resize so the short side is this')
    parser.add_argument('--format', choices=['jpg', 'png'], default='jpg')
    parser.add_argument('--quality', type=int, default=2, help='JPEG quality (ffmpeg q:v)')
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--ffmpeg-args', default=None,
                        help='raw ffmpeg output options (replace --fps/--size)')
    parser.add_argument('--pattern', default=None, help='file pattern, e.g. img_%%05d.jpg')
    parser.add_argument('--max-missing-frames', type=float, default=DEFAULT_MAX_MISSING,
                        metavar='FRACTION',
                        help='fail a video missing more than this fraction of the frames its '
                             'container promises (default %(default)s; 1 accepts any)')
    parser.add_argument('--max-decode-errors', type=int, default=DEFAULT_MAX_DECODE_ERRORS,
                        metavar='N', help='fail a video for which ffmpeg reports more decode '
                                          'errors (default %(default)s)')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = _run(args)
    except (FileNotFoundError, ValueError) as err:  # no such folder, no videos, name clash
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(summary.report())
    return 1 if summary.failed else 0


def _run(args):
    return extract_frames_folder(
        args.in_dir, args.out_dir, workers=args.workers, progress=not args.no_progress,
        fps=args.fps, size=args.size, short_side=args.short_side, fmt=args.format,
        quality=args.quality, pattern=args.pattern, max_missing=args.max_missing_frames,
        max_decode_errors=args.max_decode_errors,
        extra_args=shlex.split(args.ffmpeg_args) if args.ffmpeg_args else None)


if __name__ == '__main__':
    sys.exit(main())
