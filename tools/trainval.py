"""Train a detector from a config (single process, or under torchrun for several).

    python tools/trainval.py CONFIG [--work-dir DIR] [--resume [CKPT] | --overwrite]
        [--cfg-options k=v ...]
    bash tools/dist_trainval.sh CONFIG GPUS [same arguments]

A work dir holds one run: a fresh run refuses a work dir with an earlier run's checkpoints
(or TALLFormer working bank); ``--resume`` continues that run exactly, ``--overwrite`` moves
it aside to ``<work dir>.old-<time>`` and starts afresh. ``load_from=PATH`` in the config (or
``--cfg-options load_from=PATH``) starts from the weights of a vedatad or official ActionFormer
checkpoint. Ctrl-C stops with one line naming the last checkpoint and how to resume.
"""
import argparse
import os
import shlex
import sys

import vedatad.data  # noqa: F401  registers datasets
import vedatad.models  # noqa: F401  registers models
from vedatad.engine import (CheckpointError, ResumeError, TrainingInterrupted,
                            WorkDirInUseError, train)
from vedatad.engine.checks import preflight_or_exit
from vedatad.engine.config_loader import add_cfg_options, load_config_or_exit
from vedatad.engine.config_paths import TOP_LEVEL_KEYS
from vedatad.utils.config_keys import ConfigKeyError
from vedatad.utils.workers import WorkerTempDirError

# errors whose message says everything: printed as one line, no traceback
USER_ERRORS = (CheckpointError, ConfigKeyError, ResumeError, WorkDirInUseError,
               FileNotFoundError, WorkerTempDirError)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a temporal action detector.')
    parser.add_argument('config')
    parser.add_argument('--work-dir', help='default: the config work_dir or workdir/<config>')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--resume', nargs='?', const='auto', default=None,
                       help='resume from CKPT, or from the work dir\'s latest checkpoint')
    group.add_argument('--overwrite', action='store_true',
                       help='move an earlier run in the work dir aside (to '
                            '<work dir>.old-<time>) and start afresh')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def default_work_dir(cfg, config_path):
    return cfg.get('work_dir') or os.path.join(
        'workdir', os.path.splitext(os.path.basename(config_path))[0])


def resume_command(args, work_dir):
    script = sys.argv[0] if sys.argv[0].endswith('trainval.py') else 'tools/trainval.py'
    return ' '.join(shlex.quote(a) for a in ['python', script, args.config,
                                              '--work-dir', work_dir, '--resume'])


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config_or_exit(args.config, args.cfg_options, TOP_LEVEL_KEYS)
    work_dir = args.work_dir or default_work_dir(cfg, args.config)
    cfg.work_dir = work_dir
    preflight_or_exit(cfg, 'train', work_dir)  # every problem at once, before any work
    try:
        train(cfg, work_dir, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted as stop:
        if os.environ.get('RANK', '0') != '0':
            return 130  # rank 0 says it once
        if stop.last_checkpoint:
            print(f'\n{stop}; continue with: {resume_command(args, work_dir)}', file=sys.stderr)
        else:
            print(f'\n{stop}; start again with --overwrite', file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print('\ninterrupted before training started; nothing to resume', file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
