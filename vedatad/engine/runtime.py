"""Seeds, work directory, logger and the copy of the resolved config."""
import itertools
import os
import random
import signal
import time

import numpy as np
import torch

from mmengine.logging import MMLogger

from ..utils.allocator import keep_freed_memory
from ..utils.io import atomic_write_text
from ..utils.workers import silence_orphaned_threads

_LOGGER_COUNT = itertools.count()


def seed_everything(seed, deterministic=None):
    """Seed python, numpy and torch (all devices); ``deterministic`` True/False also sets the
    cuDNN / algorithm determinism flags on CUDA (None leaves them)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # reaches only processes started after this (spawned workers); this process's string
    # hashing was fixed at its start, and no result of vedatad depends on set / hash order
    os.environ['PYTHONHASHSEED'] = str(seed)
    if deterministic is not None and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        if deterministic:
            os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
            torch.use_deterministic_algorithms(True, warn_only=True)


def configure_cpu(cfg):
    """``cpu_threads`` in the config caps torch's intra-op threads (small CPU jobs run faster
    single-threaded on a busy machine); freed large buffers are kept for reuse (long videos
    would otherwise pay page faults for every layer's activations again)."""
    threads = cfg.get('cpu_threads')
    if threads:
        torch.set_num_threads(int(threads))
    keep_freed_memory()


def epoch_seed(seed, epoch, rank):
    """Seed for one epoch on one rank: a resumed run redraws exactly what the straight run
    drew (crops, drop-path masks), and ranks draw different augmentations."""
    return (seed + 100003 * (epoch + 1) + 1000003 * rank) % 2**31


def seed_worker(worker_id):
    """DataLoader workers: torch seeds each worker; derive numpy's and python's seeds from it
    too. Workers ignore Ctrl-C: the main process handles it (one message, no worker
    tracebacks) and shuts them down; SIGTERM ends a worker as usual."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the trainer's stop request
    silence_orphaned_threads()
    np.random.seed(torch.initial_seed() % 2**32)
    random.seed(torch.initial_seed())


def get_logger(work_dir, rank, name='vedatad'):
    """MMLogger writing to the console and (rank 0) ``WORK_DIR/<name>_<time>.log``."""
    work_dir = work_dir or '.'  # a bare file name's folder is '' (the current directory)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    instance = f'{name}_{stamp}_{os.getpid()}_{next(_LOGGER_COUNT)}'
    if rank != 0:
        return MMLogger.get_instance(instance, logger_name=name, log_level='WARNING')
    os.makedirs(work_dir, exist_ok=True)
    return MMLogger.get_instance(instance, logger_name=name, log_level='INFO',
                                 log_file=os.path.join(work_dir, f'{name}_{stamp}.log'))


def config_text(cfg):
    """The resolved config (after _base_ and --cfg-options) as Python text."""
    try:
        return cfg.pretty_text
    except Exception:  # pretty printing can fail on exotic values; plain text still records it
        return cfg.text if hasattr(cfg, 'text') else str(cfg.to_dict())


def save_config_copy(cfg, work_dir, name='config.py'):
    """The resolved config, so a run can be repeated."""
    atomic_write_text(os.path.join(work_dir, name), config_text(cfg))
