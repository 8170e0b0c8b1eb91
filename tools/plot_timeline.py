"""Draw ground truth vs detections per video into a PNG.

    python tools/plot_timeline.py GT.json DETECTIONS.json --out timeline.png [--subset validation]
        [--score-threshold 0.3] [--max-videos 12]
"""
import argparse

from vedatad.data.annotations import load_annotations
from vedatad.evaluation.results import load_results
from vedatad.utils.visualize import draw_timeline


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('gt')
    parser.add_argument('detections')
    parser.add_argument('--out', required=True)
    parser.add_argument('--subset')
    parser.add_argument('--score-threshold', type=float, default=0.3)
    parser.add_argument('--max-videos', type=int, default=12)
    args = parser.parse_args(argv)
    videos = load_annotations(args.gt, subset=args.subset)
    gt = {vid: dict(duration=v.duration, segments=[(s.start, s.end, s.label) for s in v.segments])
          for vid, v in videos.items()}
    detections = load_results(args.detections)
    title = (f'{args.detections}: ground truth (top row) vs detections with score >= '
             f'{args.score_threshold} (bottom row, faded by score)')
    draw_timeline(gt, detections, args.out, score_threshold=args.score_threshold,
                  max_videos=args.max_videos, title=title)
    print(f'timeline: {args.out}')


if __name__ == '__main__':
    main()
