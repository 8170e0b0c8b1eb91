"""Detect actions in new videos with a trained checkpoint: video files in, actions out.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] --out DETS.json
        [--plot DIR_OR_PNG] [--score-threshold S] [--device cpu|cuda]
        [--class-names FILE_OR_LIST] [--no-ema] [--no-progress] [--cfg-options k=v ...]

INPUT: video files or folders of them (TALLFormer checkpoints), or `.npy` feature files
(T, C), videos, or folders of them (feature-based ActionFormer checkpoints: videos are
extracted as the training features were, when vedatad extracted those; the config key
`feature_extractor` names the extraction config otherwise). No annotation file, dataset
path or duration is needed; videos are read at the model's frame rate. The output is
an ActivityNet submission JSON keyed by file stem with the training class names. An input
that cannot be used is refused in one line naming it (exit status 1), the others are
processed. ``--class-names`` (a text file with one name per line, or a comma-separated
list) is for checkpoints that do not record them (official ActionFormer ones).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainval import USER_ERRORS  # noqa: E402

import vedatad.data  # noqa: F401,E402  registers datasets
import vedatad.models  # noqa: F401,E402  registers models
from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit  # noqa: E402
from vedatad.engine.config_paths import TOP_LEVEL_KEYS  # noqa: E402
from vedatad.engine.infer import InferenceError, infer  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detect actions in new videos.')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='video files / folders (and .npy feature files / folders)')
    parser.add_argument('--out', required=True, help='detections (ActivityNet JSON)')
    parser.add_argument('--plot', help='timeline PNG, or a folder for one PNG per video')
    parser.add_argument('--score-threshold', type=float, default=None,
                        help='keep detections scoring at least this (default: all)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), help='default: the config\'s')
    parser.add_argument('--class-names', help='file (one per line) or comma-separated list')
    parser.add_argument('--no-ema', action='store_true', help='use the raw (non-EMA) weights')
    parser.add_argument('--no-progress', action='store_true')
    add_cfg_options(parser, example='val_dataset.pipeline_cfg.overlap=0.5')
    return parser.parse_args(argv)


def read_class_names(value):
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value, encoding='utf-8') as f:
            return [line.strip() for line in f if line.strip()]
    return [v.strip() for v in value.split(',') if v.strip()]


def plot(report, target, score_threshold):
    from vedatad.utils.visualize import draw_timeline
    if not report.submission:
        return
    if os.path.isdir(target) or not target.lower().endswith('.png'):
        os.makedirs(target, exist_ok=True)
        targets = {v: os.path.join(target, f'{v}.png') for v in report.submission}
    else:
        targets = {None: target}
    for vid, path in targets.items():
        dets = report.submission if vid is None else {vid: report.submission[vid]}
        summary = draw_timeline(dets, path, durations=report.durations,
                                score_threshold=0.3 if score_threshold is None else score_threshold)
        for line in summary.lines():
            print(line)


def main(argv=None):
    args = parse_args(argv)
    options = dict(args.cfg_options or {})
    if args.device:
        options['device'] = args.device
    cfg = load_config_or_exit(args.config, options, TOP_LEVEL_KEYS)
    from vedatad.evaluation.results import save_results
    try:
        report = infer(cfg, args.checkpoint, args.inputs, score_threshold=args.score_threshold,
                       class_names=read_class_names(args.class_names),
                       use_ema=not args.no_ema, progress=not args.no_progress,
                       options=options)
    except (InferenceError, *USER_ERRORS) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ninference interrupted: nothing written', file=sys.stderr)
        return 130
    for path, reason in report.refused.items():
        print(f'refused {path}: {reason}', file=sys.stderr)
    if not report.submission:
        print('error: no input could be used', file=sys.stderr)
        return 1
    save_results(args.out, report.submission)
    for vid, dets in report.submission.items():
        best = f', best {dets[0]["label"]} {dets[0]["score"]:.3f} at ' \
               f'{dets[0]["segment"][0]:.1f}-{dets[0]["segment"][1]:.1f} s' if dets else ''
        print(f'{vid}: {report.durations[vid]:.1f} s, {len(dets)} detection(s){best}')
    print(f'{len(report.submission)} video(s) -> {args.out}')
    if args.plot:
        plot(report, args.plot, args.score_threshold)
    return 1 if report.refused else 0


if __name__ == '__main__':
    sys.exit(main())
