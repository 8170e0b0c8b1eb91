"""Evaluate detections (ActivityNet submission JSON) against ActivityNet-style ground truth.

    python tools/eval_detections.py GT.json PRED.json [--subset validation]
        [--tiou-thresholds 0.5:0.95:10 | 0.3,0.4,0.5,0.6,0.7] [--json METRICS.json]
        [--ignore-unknown-labels] [--per-class]

Numbers are those of the official ActivityNet detection evaluator (see vedatad.evaluation):
every ground-truth instance counts, duplicates included. tools/test.py reports what the
ActionFormer release's eval.py reports instead (duplicate ground-truth instances, same class
and ends within 1 ms, count once; ``--protocol actionformer`` here does the same), so the two
differ on ground truth with duplicates.
"""
import argparse
import sys
import warnings

from vedatad.evaluation import evaluate_detections, format_metrics_table, parse_tiou_thresholds
from vedatad.utils.io import atomic_write_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('gt', help='ground truth (ActivityNet annotation JSON)')
    parser.add_argument('pred', help='predictions (ActivityNet submission JSON)')
    parser.add_argument('--subset', default=None,
                        help='ground-truth subset to evaluate (case-insensitive; default: all)')
    parser.add_argument('--tiou-thresholds', default='0.3,0.4,0.5,0.6,0.7',
                        help='START:STOP:NUM (np.linspace) or a comma list '
                             '(default 0.3,0.4,0.5,0.6,0.7)')
    parser.add_argument('--json', help='write the metrics to this JSON file')
    parser.add_argument('--ignore-unknown-labels', action='store_true',
                        help='drop predictions whose label the ground truth does not know')
    parser.add_argument('--per-class', action='store_true', help='also print per-class AP')
    parser.add_argument('--protocol', choices=('activitynet', 'actionformer'),
                        default='activitynet',
                        help='activitynet (default): every ground-truth instance counts; '
                             'actionformer: as the ActionFormer release (and tools/test.py), '
                             'duplicate instances count once')
    return parser.parse_args(argv)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f'warning: {message}', file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        tious = parse_tiou_thresholds(args.tiou_thresholds)
        metrics = evaluate_detections(args.gt, args.pred, subset=args.subset,
                                      tiou_thresholds=tious,
                                      ignore_unknown_labels=args.ignore_unknown_labels,
                                      protocol=args.protocol)
    except (OSError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(format_metrics_table(metrics, per_class=args.per_class))
    if args.json:
        atomic_write_json(args.json, metrics, indent=2)
        print(f'metrics written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
