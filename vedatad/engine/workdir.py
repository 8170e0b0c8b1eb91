"""Which runs may use a work dir.

A work dir belongs to one run. A fresh training (no ``--resume``) refuses a work dir that
holds what an earlier run wrote and a new run would silently reuse or overwrite: checkpoints,
and the model's run state (``run_state_paths(work_dir)``, e.g. TALLFormer's working memory
bank, which training rewrites). ``--overwrite`` moves the earlier run aside instead of
deleting anything: every entry of the work dir goes to the sibling folder
``<WORK_DIR>.old-<YYYYmmdd-HHMMSS>`` (and run state outside the work dir to
``<PATH>.old-<YYYYmmdd-HHMMSS>``), which the log names; delete it when it is no longer
needed. A TALLFormer working bank moved aside is re-copied from the template by the new run.
"""
import os
import shutil
import time

from .checkpoint import checkpoint_files


class WorkDirInUseError(RuntimeError):
    """A fresh run was started in a work dir that holds an earlier run."""


def _stamp():
    return time.strftime('%Y%m%d-%H%M%S')


def aside_path(path):
    """A free ``<path>.old-<time>[-n]`` next to ``path``."""
    base = f'{os.path.abspath(path).rstrip(os.sep)}.old-{_stamp()}'
    candidate, n = base, 1
    while os.path.exists(candidate):
        candidate, n = f'{base}-{n}', n + 1
    return candidate


def earlier_run(work_dir, extra_paths=()):
    """What an earlier run left that a fresh run must not reuse: checkpoint files and the
    existing ``extra_paths`` (model run state)."""
    found = checkpoint_files(work_dir) if os.path.isdir(work_dir) else []
    return found + [str(p) for p in extra_paths if os.path.exists(p)]


def refusal_message(work_dir, found):
    shown = ', '.join(found[:4]) + (f' and {len(found) - 4} more' if len(found) > 4 else '')
    return (f'work dir {work_dir} holds an earlier run ({shown}). Pass --resume to continue '
            'that run, or --overwrite to move it aside (to <work dir>.old-<time>) and start '
            'afresh, or choose another --work-dir.')


def move_work_dir_aside(work_dir):
    """Move every entry of ``work_dir`` into a new sibling folder; returns its path or None
    when the work dir is empty or absent."""
    if not os.path.isdir(work_dir) or not os.listdir(work_dir):
        return None
    target = aside_path(work_dir)
    os.makedirs(target)
    for name in sorted(os.listdir(work_dir)):
        shutil.move(os.path.join(work_dir, name), os.path.join(target, name))
    return target


def move_aside(path):
    """Rename ``path`` (file or folder) to a free ``<path>.old-<time>``; returns the new path."""
    target = aside_path(path)
    shutil.move(str(path), target)
    return target
