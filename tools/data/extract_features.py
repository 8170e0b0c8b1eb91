"""Fill a memory bank with Video Swin features (resumable, sharded under torchrun).

    python tools/data/extract_features.py --config configs/extract/demo_tiny.py
    torchrun --nproc_per_node 4 tools/data/extract_features.py --config CONFIG
    python tools/data/extract_features.py --config CONFIG --export-npy data/feats/swin_t

Exit status 1 when any video failed (their names are listed) or the config cannot be read,
2 when the job was refused (a bad config section, a bank made with other settings, a bank
another job is writing), 130 on
Ctrl-C (what is complete is kept; the same command resumes).
"""
import argparse
import sys

from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit
from vedatad.engine.extract import (ExtractionInterrupted, dist_info, extract_features,
                                    format_summary)
from vedatad.membank import BankError
from vedatad.utils.config_keys import ConfigKeyError
from vedatad.utils.workers import WorkerTempDirError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', required=True)
    add_cfg_options(parser, example='bank.path=/tmp/bank')
    parser.add_argument('--export-npy', metavar='DIR',
                        help='also write ActionFormer-style (T, C) float32 .npy per video')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config_or_exit(args.config, args.cfg_options)
    try:
        summary = extract_features(cfg, export_npy=args.export_npy,
                                   progress=not args.no_progress)
    except ExtractionInterrupted as err:
        print(err, file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        print('interrupted before any video was processed; run the same command again',
              file=sys.stderr, flush=True)
        return 130
    except (BankError, ConfigKeyError, WorkerTempDirError) as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        return 2
    rank = dist_info()[0]
    print(format_summary(summary, rank), flush=True)
    return 1 if summary.failed else 0


if __name__ == '__main__':
    sys.exit(main())
