"""Fill a memory bank with Video Swin features (resumable, sharded under torchrun).

    python tools/data/extract_features.py --config configs/extract/demo_tiny.py
    torchrun --nproc_per_node 4 tools/data/extract_features.py --config CONFIG
    python tools/data/extract_features.py --config CONFIG --export-npy data/feats/swin_t

Exit status 1 when any video failed (their names are listed).
"""
import argparse
import sys

from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit
from vedatad.membank.extract import dist_info, extract_features, format_summary


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
    summary = extract_features(cfg, export_npy=args.export_npy,
                               progress=not args.no_progress)
    rank = dist_info()[0]
    print(format_summary(summary, rank), flush=True)
    return 1 if summary.failed else 0


if __name__ == '__main__':
    sys.exit(main())
