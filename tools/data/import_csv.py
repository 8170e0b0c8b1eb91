"""Actions labelled elsewhere (a CSV: video,start,end,label) -> ActivityNet-style annotations.

    python tools/data/import_csv.py ACTIONS.csv --out ANN.json
        (--skeleton SKELETON.json | --videos VIDEO_DIR)
        [--subset RULE | --subset-column NAME] [--overwrite]

Durations and fps come from the skeleton (tools/data/make_annotations.py) or are measured
from VIDEO_DIR. Splits: the skeleton's, a RULE as in make_annotations.py, or a CSV column.
Every row is validated; all problems are listed as FILE:LINE and nothing is written. The
output is written atomically (--out may be the skeleton itself).
"""
import argparse
import os
import sys

from vedatad.data.annotation_skeleton import (SplitRuleError, measure_videos,
                                              parse_split_rule, write_annotations)
from vedatad.data.annotations import AnnotationError, load_annotations
from vedatad.data.csv_import import CsvImportError, import_csv


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('csv')
    parser.add_argument('--out', required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--skeleton', help='annotation skeleton with durations and splits')
    source.add_argument('--videos', help='video folder to measure')
    split = parser.add_mutually_exclusive_group()
    split.add_argument('--subset', help='split rule: NAME, NAME=FRACTION,... or NAME=PATTERN,...')
    split.add_argument('--subset-column', help='CSV column that names each video\'s split')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --out (other than the skeleton)')
    return parser.parse_args(argv)


def known_videos(args):
    """video id -> duration, fps, num_frames, subset."""
    if args.skeleton:
        videos = load_annotations(args.skeleton)
        return {vid: dict(duration=v.duration, fps=v.fps, subset=v.subset)
                for vid, v in videos.items()}
    facts, refused = measure_videos(args.videos, args.workers)
    for vid, reason in refused.items():
        print(f'refused {vid}: {reason}', file=sys.stderr)
    return {vid: dict(duration=f.duration, fps=f.fps, num_frames=f.num_frames)
            for vid, f in facts.items()}


def main(argv=None):
    args = parse_args(argv)
    if args.videos and not (args.subset or args.subset_column):
        print('error: with --videos give --subset or --subset-column', file=sys.stderr)
        return 1
    try:
        videos = known_videos(args)
        subsets = parse_split_rule(args.subset)(list(videos)) if args.subset else None
        data, notes = import_csv(args.csv, videos, subsets, args.subset_column)
        in_place = args.skeleton and os.path.abspath(args.skeleton) == os.path.abspath(args.out)
        write_annotations(args.out, data, overwrite=args.overwrite or bool(in_place))
    except (CsvImportError, AnnotationError, SplitRuleError, FileNotFoundError,
            FileExistsError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for note in notes:
        print(note)
    print(f'{len(data["database"])} videos -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
