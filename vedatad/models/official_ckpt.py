"""Loading checkpoints of the official ActionFormer release into ``ActionFormer``.

The official ``.pth.tar`` is a dict with 'epoch', 'state_dict', 'state_dict_ema',
'optimizer', 'scheduler'; model weights are keyed like ours but prefixed 'module.'
(the release wraps the model in DataParallel). Loading is strict: every key must be
consumed and every shape must match, otherwise the error lists the offending keys.
"""
from pathlib import Path

from ..utils.safe_load import torch_load_safe

WRAPPER_PREFIX = 'module.'


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model."""


def strip_prefix(state_dict, prefix=WRAPPER_PREFIX):
    """Drop a wrapper prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _pick_weights(ckpt, use_ema, source):
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f'{source}: expected a dict, got {type(ckpt).__name__}')
    key = 'state_dict_ema' if use_ema else 'state_dict'
    if key in ckpt:
        return ckpt[key]
    if 'state_dict' in ckpt or 'state_dict_ema' in ckpt:
        raise CheckpointMismatchError(f'{source}: has no {key!r} (keys: {sorted(ckpt)}); '
                                      f'use_ema={use_ema}')
    # already a bare state dict
    return ckpt


def compare_state_dicts(model_state, ckpt_state):
    """Return (missing, unexpected, shape_mismatch) key lists."""
    missing = sorted(set(model_state) - set(ckpt_state))
    unexpected = sorted(set(ckpt_state) - set(model_state))
    mismatch = sorted(f'{k}: checkpoint {tuple(ckpt_state[k].shape)} vs model '
                      f'{tuple(model_state[k].shape)}'
                      for k in set(model_state) & set(ckpt_state)
                      if tuple(model_state[k].shape) != tuple(ckpt_state[k].shape))
    return missing, unexpected, mismatch


def load_official_actionformer(model, path_or_dict, use_ema=True):
    """Load official ActionFormer weights into `model` (strict).

    path_or_dict: path to the official .pth.tar, or the loaded dict (or a bare state dict).
    use_ema: take 'state_dict_ema' (what the official eval.py uses), else 'state_dict'.
    Returns the checkpoint's epoch (or None). Raises CheckpointMismatchError listing
    missing / unexpected / shape-mismatched keys.
    """
    if isinstance(path_or_dict, (str, Path)):
        source = str(path_or_dict)
        # weights_only: refuses (naming the file) anything but tensors and plain values
        ckpt = torch_load_safe(source, what='ActionFormer checkpoint')
    else:
        source, ckpt = '<checkpoint dict>', path_or_dict
    state = strip_prefix(_pick_weights(ckpt, use_ema, source))
    missing, unexpected, mismatch = compare_state_dicts(model.state_dict(), state)
    if missing or unexpected or mismatch:
        lines = [f'{source} does not match {type(model).__name__}:']
        for title, keys in (('missing', missing), ('unexpected', unexpected),
                            ('shape mismatch', mismatch)):
            if keys:
                lines.append(f'  {title} ({len(keys)}): ' + ', '.join(keys))
        raise CheckpointMismatchError('\n'.join(lines))
    model.load_state_dict(state, strict=True)
    return ckpt.get('epoch') if isinstance(ckpt, dict) else None
