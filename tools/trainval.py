"""Train a detector from a config (single process, or under torchrun for several).

    python tools/trainval.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--cfg-options k=v ...]
    bash tools/dist_trainval.sh CONFIG GPUS [same arguments]
"""
import argparse
import os

from mmengine.config import Config, DictAction

import vedatad.data  # noqa: F401  registers datasets
import vedatad.models  # noqa: F401  registers models
from vedatad.engine import train


def parse_args():
    parser = argparse.ArgumentParser(description='Train a temporal action detector.')
    parser.add_argument('config')
    parser.add_argument('--work-dir', help='default: the config work_dir or workdir/<config>')
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        help='resume from CKPT, or from the work dir\'s latest checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. train_cfg.epochs=5')
    return parser.parse_args()


def load_config(path, options):
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


def default_work_dir(cfg, config_path):
    return cfg.get('work_dir') or os.path.join(
        'workdir', os.path.splitext(os.path.basename(config_path))[0])


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or default_work_dir(cfg, args.config)
    cfg.work_dir = work_dir
    train(cfg, work_dir, resume=args.resume)


if __name__ == '__main__':
    main()
