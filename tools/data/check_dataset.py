"""Check a config against its data before training or testing: every problem at once.

    python tools/data/check_dataset.py CONFIG [--mode all|train|test] [--work-dir DIR]
        [--deep] [--cfg-options KEY=VALUE ...]

Checks unknown config keys, the model against the dataset (classes, feature size,
max_seq_len), annotations, splits, classes without examples, missing or mis-shaped feature
files (headers only; --deep reads every file for NaN/inf), missing or unreadable videos, and
for TALLFormer the memory bank against the dataset and the model. Prints every problem and
exits 1 if there is any; tools/trainval.py and tools/test.py run the same checks first.
"""
import argparse
import os
import sys

import vedatad.data  # noqa: F401  registers datasets
import vedatad.models  # noqa: F401  registers models
from vedatad.engine.checks import check_config
from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit
from vedatad.engine.config_paths import TOP_LEVEL_KEYS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--mode', choices=('all', 'train', 'test'), default='all',
                        help='all: training and validation data (default)')
    parser.add_argument('--work-dir', help='where training keeps its working memory bank '
                                           '(default: the config work_dir or workdir/<config>)')
    parser.add_argument('--deep', action='store_true',
                        help='also read every feature file completely (NaN / inf)')
    parser.add_argument('--no-progress', action='store_true')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config_or_exit(args.config, args.cfg_options, TOP_LEVEL_KEYS)
    work_dir = args.work_dir or cfg.get('work_dir') or os.path.join(
        'workdir', os.path.splitext(os.path.basename(args.config))[0])
    report = check_config(cfg, args.mode, work_dir, progress=not args.no_progress,
                          deep=args.deep)
    print(report.format())
    if not report.ok:
        return 1
    print(f'{args.config}: no problem found')
    return 0


if __name__ == '__main__':
    sys.exit(main())
