"""Checkpoints: ``WORK_DIR/epoch_NNN.pth.tar`` and ``latest.pth.tar``, written atomically.

Content (the release's keys plus ``meta``): ``epoch`` (epochs completed), ``state_dict``,
``state_dict_ema``, ``optimizer``, ``scheduler``, ``meta`` (global iteration, the model's
``extra_state()``, counters). Model state is saved without a DDP ``module.`` prefix.
"""
import os
import re

import torch

from ..utils.io import atomic_torch_save

LATEST = 'latest.pth.tar'
EPOCH_PATTERN = re.compile(r'epoch_(\d+)\.pth\.tar$')


def epoch_path(work_dir, epoch):
    return os.path.join(work_dir, f'epoch_{epoch:03d}.pth.tar')


def save_checkpoint(work_dir, state):
    """Write the epoch file, then ``latest`` (each atomic); return the epoch file's path."""
    path = epoch_path(work_dir, state['epoch'])
    atomic_torch_save(state, path)
    atomic_torch_save(state, os.path.join(work_dir, LATEST))
    return path


def load_checkpoint(path, map_location='cpu'):
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    # our checkpoints hold optimizer state and plain python values, not just tensors
    return torch.load(path, map_location=map_location, weights_only=False)


def find_latest(work_dir):
    """Path of the newest checkpoint in ``work_dir`` or None."""
    latest = os.path.join(work_dir, LATEST)
    if os.path.isfile(latest):
        return latest
    epochs = list_epochs(work_dir)
    return epoch_path(work_dir, epochs[-1]) if epochs else None


def list_epochs(work_dir):
    if not os.path.isdir(work_dir):
        return []
    found = (EPOCH_PATTERN.match(name) for name in os.listdir(work_dir))
    return sorted(int(m.group(1)) for m in found if m)


def strip_prefix(state_dict, prefix='module.'):
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def is_official_actionformer(checkpoint):
    """The release saves DataParallel weights: every key starts with ``module.``."""
    state = checkpoint.get('state_dict_ema') or checkpoint.get('state_dict') or {}
    return bool(state) and all(k.startswith('module.') for k in state)


def load_model_weights(model, path, use_ema=True, logger=None):
    """Load a vedatad or an official ActionFormer checkpoint into ``model`` (strict).

    The EMA weights are used when present and ``use_ema``. Official checkpoints go through
    ``vedatad.models.official_ckpt.load_official_actionformer``. Returns the checkpoint dict.
    """
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or not ({'state_dict', 'state_dict_ema'} & set(checkpoint)):
        raise ValueError(f'{path}: not a checkpoint (no state_dict / state_dict_ema)')
    if is_official_actionformer(checkpoint):
        from ..models.official_ckpt import load_official_actionformer
        load_official_actionformer(model, path, use_ema=use_ema)  # path: errors name it
        if logger:
            logger.info(f'loaded official ActionFormer checkpoint {path} '
                        f'({"EMA" if use_ema else "raw"} weights)')
        return checkpoint
    key = 'state_dict_ema' if use_ema and checkpoint.get('state_dict_ema') else 'state_dict'
    load_state_strict(model, strip_prefix(checkpoint[key]), f'{path} [{key}]')
    if logger:
        logger.info(f'loaded {key} from {path} (epoch {checkpoint.get("epoch")})')
    return checkpoint


def load_state_strict(model, state, source):
    """``load_state_dict`` that names the file and lists every missing / unexpected key and
    every shape mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                    for k in set(own) & set(state)
                    if hasattr(state[k], 'shape') and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        lines = [f'{source} does not match the model:']
        lines += [f'  missing in checkpoint: {k}' for k in missing]
        lines += [f'  unexpected in checkpoint: {k}' for k in unexpected]
        lines += [f'  shape mismatch: {s}' for s in shapes]
        raise ValueError('\n'.join(lines))
    model.load_state_dict(state, strict=True)
