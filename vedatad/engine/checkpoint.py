"""Checkpoints: ``WORK_DIR/epoch_NNN.pth.tar`` and ``latest.pth.tar``, written atomically.

Every file is written to a temporary ``.NAME.XXXX.tmp`` in the work dir and renamed into
place; a save killed half-way leaves such a temporary file, which the next training start in
that work dir removes (with a log line). Checkpoints are read with ``weights_only=True``: a
file holding anything but tensors and plain values is refused with an error naming it, and a
truncated or corrupted file gets an error naming it and saying so.

Content (the release's keys plus ``meta``), plain types only:

- ``epoch``: epochs completed; ``state_dict``, ``state_dict_ema`` (model state, no DDP
  ``module.`` prefix; EMA None when off), ``optimizer``, ``scheduler`` (state dicts);
- ``meta``:
    - ``global_iter``: iterations done; ``iters_per_epoch``; ``world_size``;
    - ``schedule``: what defines the learning-rate schedule (``epochs`` = the resolved
      ``train_cfg.epochs``, ``iters_per_epoch`` and the scheduler's ``plan()``), compared on
      ``--resume``;
    - ``extra_state``: the model's ``extra_state()`` (e.g. the loss normaliser, the bank step);
    - ``grad_scaler``, ``nonfinite_skipped``;
    - ``classes``: list, index -> class name of the detections (None where the training data
      names no class);
    - ``data``: what inference on raw videos needs to turn frames into features and steps
      back into seconds: ``fps`` (frame rate the features were computed at; None when it
      varies per video and comes from the annotations), ``feat_stride`` (frames between two
      feature steps), ``feat_num_frames`` (frames each feature step sees), and when known
      ``downsample_rate``, ``chunk_size``, ``frames_per_row``, ``window_size``, and for
      features exported by ``extract_features --export-npy`` ``extraction`` (backbone,
      weights file and hash, frame rate, crop, mean/std, chunking: how to compute the same
      features for new videos, ``vedatad.engine.extract.Extraction``);
    - ``config``: the resolved config as Python text (after ``_base_`` and ``--cfg-options``);
    - ``vedatad_version``.

Official ActionFormer checkpoints (``module.``-prefixed keys, EMA weights) load through
``load_model_weights`` as well.
"""
import os
import re
from collections import OrderedDict

import numpy as np
import torch

from ..models.official_ckpt import compare_state_dicts, strip_prefix
from ..utils.io import atomic_torch_save
from ..utils.safe_load import CheckpointError, UnsafeFileError, torch_load_safe

LATEST = 'latest.pth.tar'
EPOCH_PATTERN = re.compile(r'epoch_(\d+)\.pth\.tar$')
# temporary files of an interrupted atomic checkpoint write (see utils.io.atomic_write_bytes)
TEMP_PATTERN = re.compile(r'^\.(epoch_\d+\.pth\.tar|latest\.pth\.tar)\..+\.tmp$')
WRAPPER_PREFIX = 'module.'


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model (missing, unexpected, other shapes)."""


__all__ = ['CheckpointError', 'CheckpointMismatchError', 'UnsafeFileError', 'LATEST',
           'epoch_path', 'save_checkpoint', 'load_checkpoint', 'find_latest', 'list_epochs',
           'remove_stray_temp_files', 'load_model_weights', 'load_state_strict', 'plain_state',
           'strip_prefix', 'checkpoint_files']


def epoch_path(work_dir, epoch):
    return os.path.join(work_dir, f'epoch_{epoch:03d}.pth.tar')


def plain_state(obj, where='checkpoint'):
    """``obj`` with numpy values turned into tensors / Python numbers; any other type than
    tensors, dict, list, tuple, str, int, float, bool and None is an error naming where it is,
    so every checkpoint written loads with ``weights_only=True``."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        bad_key = next((k for k in obj if not isinstance(k, (str, int))), None)
        if bad_key is not None:
            raise TypeError(f'{where}: key {bad_key!r} is not a string or an integer')
        plain = {k: plain_state(v, f'{where}[{k!r}]') for k, v in obj.items()}
        return OrderedDict(plain) if isinstance(obj, OrderedDict) else plain
    if isinstance(obj, (list, tuple)):
        items = [plain_state(v, f'{where}[{i}]') for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f'{where}: {type(obj).__name__} is not a plain type; checkpoints hold only '
                    'tensors, dicts, lists, tuples, strings, numbers, booleans and None')


def save_checkpoint(work_dir, state):
    """Write the epoch file, then ``latest`` (each atomic); return the epoch file's path."""
    state = plain_state(state)
    path = epoch_path(work_dir, state['epoch'])
    atomic_torch_save(state, path)
    atomic_torch_save(state, os.path.join(work_dir, LATEST))
    return path


def load_checkpoint(path, map_location='cpu'):
    """A checkpoint dict (``weights_only=True``); errors name the file."""
    return torch_load_safe(path, map_location=map_location, what='checkpoint')


def find_latest(work_dir):
    """Path of the newest checkpoint in ``work_dir`` or None: the highest epoch file
    (``latest`` is written after it, so it is never newer), else ``latest``."""
    epochs = list_epochs(work_dir)
    if epochs:
        return epoch_path(work_dir, epochs[-1])
    latest = os.path.join(work_dir, LATEST)
    return latest if os.path.isfile(latest) else None


def list_epochs(work_dir):
    if not os.path.isdir(work_dir):
        return []
    found = (EPOCH_PATTERN.match(name) for name in os.listdir(work_dir))
    return sorted(int(m.group(1)) for m in found if m)


def remove_stray_temp_files(work_dir, logger=None):
    """Delete temporary checkpoint files left by a save that was killed; returns their paths."""
    if not os.path.isdir(work_dir):
        return []
    removed = []
    for name in sorted(os.listdir(work_dir)):
        if TEMP_PATTERN.match(name):
            path = os.path.join(work_dir, name)
            os.remove(path)
            removed.append(path)
            if logger:
                logger.info(f'removed {path}: an unfinished checkpoint write of an earlier run')
    return removed


def is_official_actionformer(checkpoint):
    """The release saves DataParallel weights: every key starts with ``module.``."""
    state = checkpoint.get('state_dict_ema') or checkpoint.get('state_dict') or {}
    return bool(state) and all(k.startswith(WRAPPER_PREFIX) for k in state)


def checkpoint_weights(checkpoint, path, use_ema=True):
    """(state dict without a ``module.`` prefix, the key it came from)."""
    if not isinstance(checkpoint, dict) or not ({'state_dict', 'state_dict_ema'} & set(checkpoint)):
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(f'{path}: not a model checkpoint (no state_dict / state_dict_ema; '
                              f'found {found})')
    key = 'state_dict_ema' if use_ema and checkpoint.get('state_dict_ema') else 'state_dict'
    if not checkpoint.get(key):
        raise CheckpointError(f'{path}: {key!r} is empty')
    return strip_prefix(checkpoint[key]), key


def _mapped(state, prefix):
    """Checkpoint keys renamed for the model: ``'detector.'`` adds that prefix, ``'-detector.'``
    removes it (a TALLFormer checkpoint's detector into an ActionFormer)."""
    if not prefix:
        return dict(state)
    if prefix.startswith('-'):
        return strip_prefix(state, prefix[1:])
    return {prefix + k: v for k, v in state.items()}


def _auto_prefix(model_state, state):
    """The key mapping under which most checkpoint tensors fit the model (name and shape):
    none, ``detector.`` added (an ActionFormer checkpoint into a TALLFormer) or removed."""
    def fits(prefix):
        mapped = _mapped(state, prefix)
        return sum(1 for k, v in mapped.items() if k in model_state
                   and tuple(getattr(v, 'shape', ())) == tuple(model_state[k].shape))
    candidates = ['', 'detector.', '-detector.']
    scores = [fits(p) for p in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (scores[i], -i))]


def load_model_weights(model, path, use_ema=True, logger=None, strict=True, prefix=''):
    """Load a vedatad or an official ActionFormer checkpoint's weights into ``model``.

    ``use_ema``: the EMA weights when the checkpoint has them. ``prefix``: '' (keys as they
    are), ``'detector.'`` (added to every key), ``'-detector.'`` (removed) or None (the
    mapping that fits best). ``strict``: every key must be consumed with the right shape,
    otherwise the error lists the offending keys; ``strict=False`` loads what fits, keeps the
    model's own initialisation for the rest and logs the list. Returns the checkpoint dict
    with ``'load_report'`` added: (loaded, missing, unexpected, shape mismatches, key used,
    prefix used).
    """
    checkpoint = load_checkpoint(path)
    state, key = checkpoint_weights(checkpoint, path, use_ema)
    own = model.state_dict()
    if prefix is None:
        prefix = _auto_prefix(own, state)
    state = _mapped(state, prefix)
    missing, unexpected, shapes = compare_state_dicts(own, state)
    official = is_official_actionformer(checkpoint)
    source = f'{path} [{key}{", official ActionFormer" if official else ""}' \
        + (f', keys mapped with prefix {prefix!r}' if prefix else '') + ']'
    if strict and (missing or unexpected or shapes):
        lines = [f'{source} does not match {type(model).__name__}:']
        lines += [f'  missing in checkpoint: {k}' for k in missing]
        lines += [f'  unexpected in checkpoint: {k}' for k in unexpected]
        lines += [f'  shape mismatch: {s}' for s in shapes]
        raise CheckpointMismatchError('\n'.join(lines))
    bad = {s.split(':')[0] for s in shapes}
    usable = {k: v for k, v in state.items() if k in own and k not in bad}
    model.load_state_dict(usable, strict=False)
    report = dict(loaded=len(usable), missing=missing, unexpected=unexpected, shapes=shapes,
                  key=key, prefix=prefix)
    if logger:
        _log_report(logger, source, report, len(own), checkpoint.get('epoch'))
    checkpoint['load_report'] = report
    return checkpoint


def _log_report(logger, source, report, total, epoch):
    logger.info(f'loaded {report["loaded"]}/{total} tensors from {source} (epoch {epoch})')
    skipped = [f'  not in the checkpoint, kept as initialised: {k}' for k in report['missing']]
    skipped += [f'  other shape, re-initialised: {s}' for s in report['shapes']]
    skipped += [f'  in the checkpoint only, ignored: {k}' for k in report['unexpected']]
    if skipped:
        logger.warning(f'{len(skipped)} entries of the model / checkpoint were not loaded:\n'
                       + '\n'.join(skipped))


def load_state_strict(model, state, source):
    """``load_state_dict`` that names the source and lists every missing / unexpected key and
    every shape mismatch."""
    missing, unexpected, shapes = compare_state_dicts(model.state_dict(), state)
    if missing or unexpected or shapes:
        lines = [f'{source} does not match the model:']
        lines += [f'  missing in checkpoint: {k}' for k in missing]
        lines += [f'  unexpected in checkpoint: {k}' for k in unexpected]
        lines += [f'  shape mismatch: {s}' for s in shapes]
        raise CheckpointError('\n'.join(lines))
    model.load_state_dict(state, strict=True)


def checkpoint_files(work_dir):
    """Checkpoint files of a work dir (epoch files, then latest)."""
    paths = [epoch_path(work_dir, e) for e in list_epochs(work_dir)]
    latest = os.path.join(work_dir, LATEST)
    return paths + ([latest] if os.path.isfile(latest) else [])
