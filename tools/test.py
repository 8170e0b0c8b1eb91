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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainval import USER_ERRORS  # noqa: E402

import vedatad.data  # noqa: F401,E402  registers datasets
import vedatad.models  # noqa: F401,E402  registers models
from vedatad.engine import test  # noqa: E402
from vedatad.engine.checks import preflight_or_exit  # noqa: E402
from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit  # noqa: E402
from vedatad.engine.config_paths import TOP_LEVEL_KEYS  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a temporal action detector.')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint file or work dir')
    parser.add_argument('--epochs', nargs='+', type=int, help='epochs to test in a work dir')
    parser.add_argument('--out', help='detections (ActivityNet submission JSON)')
    parser.add_argument('--metrics', help='metrics JSON')
    parser.add_argument('--no-ema', action='store_true', help='use the raw (non-EMA) weights')
    add_cfg_options(parser, example='val_dataset.data_prefix=data/test')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config_or_exit(args.config, args.cfg_options, TOP_LEVEL_KEYS)
    preflight_or_exit(cfg, 'test')  # every problem at once, before any work
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
