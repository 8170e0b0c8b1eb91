"""An annotation skeleton for a folder of your own videos: duration and fps measured per file.

    python tools/data/make_annotations.py VIDEO_DIR --out ANN.json [--subset RULE]
        [--workers N] [--overwrite]

VIDEO_DIR holds <video_id>.<ext> files (mp4, mkv, webm, avi, mov, ...) or <video_id>/ frame
folders. RULE: a split name for every video (default 'training'), fractions
('training=0.8,validation=0.2') or file-name patterns ('validation=val_*,training=*').
Each entry gets "subset", "duration", "fps", "num_frames" and an empty "annotations" list:
label the actions elsewhere, then tools/data/import_csv.py. A video no reader can open is
refused by name (with the reason) and left out; the exit status is then 1.
"""
import argparse
import sys

from vedatad.data.annotation_skeleton import (SplitRuleError, make_skeleton, measure_videos,
                                              parse_split_rule, write_annotations)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('video_dir')
    parser.add_argument('--out', required=True, help='annotation JSON to write')
    parser.add_argument('--subset', default='training',
                        help="split rule: NAME, NAME=FRACTION,... or NAME=PATTERN,...")
    parser.add_argument('--workers', type=int, default=2, help='videos measured in parallel')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        rule = parse_split_rule(args.subset)
        facts, refused = measure_videos(args.video_dir, args.workers,
                                        progress=not args.no_progress)
        if not facts:
            print(f'error: no readable video in {args.video_dir}', file=sys.stderr)
            for vid, reason in refused.items():
                print(f'  refused {vid}: {reason}', file=sys.stderr)
            return 1
        subsets = rule(list(facts))
        write_annotations(args.out, make_skeleton(facts, subsets), overwrite=args.overwrite)
    except (SplitRuleError, FileNotFoundError, FileExistsError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    counts = {}
    for subset in subsets.values():
        counts[subset] = counts.get(subset, 0) + 1
    seconds = sum(f.duration for f in facts.values())
    print(f'{len(facts)} videos ({seconds:.1f} s) -> {args.out}; splits: '
          + ', '.join(f'{k} {n}' for k, n in sorted(counts.items())))
    for vid, reason in refused.items():
        print(f'refused {vid}: {reason}', file=sys.stderr)
    if refused:
        print(f'{len(refused)} video(s) refused and left out of {args.out}', file=sys.stderr)
    return 1 if refused else 0


if __name__ == '__main__':
    sys.exit(main())
