"""Test a checkpoint, or listed epochs of a work dir: detections JSON, mAP table, metrics JSON.

    python tools/test.py CONFIG CHECKPOINT|WORK_DIR [--epochs 25 30] [--out RESULTS.json]
        [--metrics METRICS.json] [--no-ema] [--cfg-options k=v ...]

CHECKPOINT may be a vedatad checkpoint or an official ActionFormer ``.pth.tar`` (EMA weights
are used). With several epochs, output names get an ``_epoch_N`` suffix and a summary table
across epochs is printed. The mAP is the one the ActionFormer release's eval.py reports
(``eval.protocol='actionformer'``: duplicate ground-truth instances count once);
``--cfg-options eval.protocol=activitynet`` gives the ActivityNet evaluator's, as
tools/eval_detections.py does.
"""
import argparse
import os
import sys

from mmengine.config import DictAction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainval import USER_ERRORS, load_config  # noqa: E402

from vedatad.engine import test  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a temporal action detector.')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint file or work dir')
    parser.add_argument('--epochs', nargs='+', type=int, help='epochs to test in a work dir')
    parser.add_argument('--out', help='detections (ActivityNet submission JSON)')
    parser.add_argument('--metrics', help='metrics JSON')
    parser.add_argument('--no-ema', action='store_true', help='use the raw (non-EMA) weights')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    try:
        test(cfg, args.checkpoint, epochs=args.epochs, out=args.out, metrics_out=args.metrics,
             use_ema=not args.no_ema)
    except USER_ERRORS as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ntest interrupted', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
