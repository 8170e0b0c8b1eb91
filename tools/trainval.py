"""Train a detector from a config (single process, or under torchrun for several).

    python tools/trainval.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--cfg-options k=v ...]
    bash tools/dist_trainval.sh CONFIG GPUS [same arguments]
"""
import argparse
import os

import vedatad.data  # noqa: F401  registers datasets
import vedatad.models  # noqa: F401  registers models
from vedatad.engine import train
from vedatad.engine.checks import preflight_or_exit
from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit
from vedatad.engine.config_schema import TOP_LEVEL_KEYS


def parse_args():
    parser = argparse.ArgumentParser(description='Train a temporal action detector.')
    parser.add_argument('config')
    parser.add_argument('--work-dir', help='default: the config work_dir or workdir/<config>')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CKPT, or from the work dir\'s latest checkpoint')
    add_cfg_options(parser)
    return parser.parse_args()


def default_work_dir(cfg, config_path):
    return cfg.get('work_dir') or os.path.join(
        'workdir', os.path.splitext(os.path.basename(config_path))[0])


def main():
    args = parse_args()
    cfg = load_config_or_exit(args.config, args.cfg_options, TOP_LEVEL_KEYS)
    work_dir = args.work_dir or default_work_dir(cfg, args.config)
    cfg.work_dir = work_dir
    preflight_or_exit(cfg, 'train', work_dir)  # every problem at once, before any work
    train(cfg, work_dir, resume=args.resume)


if __name__ == '__main__':
    main()
