"""Draw detections per video (and ground truth when given) into a PNG with a time axis in seconds.

    python tools/plot_timeline.py DETECTIONS.json --out timeline.png [--gt GT.json]
        [--subset validation] [--score-threshold 0.3] [--max-videos 12]
    python tools/plot_timeline.py GT.json DETECTIONS.json --out timeline.png   (same, positional)

DETECTIONS.json is an ActivityNet submission (tools/test.py, tools/infer.py); GT.json an
ActivityNet-style annotation file. Videos with no detection above the threshold are named,
with their top score, in the picture and on the console.
"""
import argparse
import sys

from vedatad.data.annotations import AnnotationError, load_annotations
from vedatad.evaluation.results import ResultsError, load_results
from vedatad.utils.io import read_json
from vedatad.utils.visualize import draw_timeline


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('files', nargs='+', metavar='FILE',
                        help='DETECTIONS.json, or GT.json DETECTIONS.json')
    parser.add_argument('--gt', help='ground truth (ActivityNet annotation JSON)')
    parser.add_argument('--out', required=True, help='PNG to write')
    parser.add_argument('--subset', help='ground-truth subset to draw (default: all)')
    parser.add_argument('--score-threshold', type=float, default=0.3)
    parser.add_argument('--max-videos', type=int, default=12)
    args = parser.parse_args(argv)
    if len(args.files) > 2 or (len(args.files) == 2 and args.gt):
        parser.error('give DETECTIONS.json (with --gt GT.json), or GT.json DETECTIONS.json')
    if len(args.files) == 2:
        args.gt, args.files = args.files[0], args.files[1:]
    args.detections = args.files[0]
    return args


def load_ground_truth(path, subset):
    videos = load_annotations(path, subset=subset)
    return {vid: dict(duration=v.duration, segments=[(s.start, s.end, s.label) for s in v.segments])
            for vid, v in videos.items()}


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.gt and 'results' in read_json(args.gt, ResultsError):
            # the two files were given the other way round: tell, do not guess silently
            raise ResultsError(f'{args.gt}: this is a detections file, not ground truth; '
                               'usage: plot_timeline.py [GT.json] DETECTIONS.json --out PNG')
        ground_truth = load_ground_truth(args.gt, args.subset) if args.gt else None
        detections = load_results(args.detections)
    except (OSError, AnnotationError, ResultsError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    what = 'ground truth (top row) vs detections' if ground_truth else 'detections'
    title = f'{args.detections}: {what} with score >= {args.score_threshold:g}, shaded by score'
    summary = draw_timeline(detections, args.out, ground_truth=ground_truth,
                            score_threshold=args.score_threshold, max_videos=args.max_videos,
                            title=title)
    for line in summary.lines():
        print(line)
    print(f'timeline: {args.out} ({len(summary.videos)} video(s))')
    return 0


if __name__ == '__main__':
    sys.exit(main())
