"""Video Swin checkpoints: official release layout <-> the key names of ``VideoSwin``.

Official Video Swin (SwinTransformer/Video-Swin-Transformer) and mmaction2 release files hold
``{'state_dict': {'backbone.<key>': ..., 'cls_head.<key>': ...}, 'meta': ...}``. Backbone keys:

    official / mmaction2                          VideoSwin (torchvision layout)
    patch_embed.proj.* / patch_embed.norm.*       same
    layers.{i}.blocks.{j}.<norm1|attn.*|norm2>    features.{2i}.{j}.<same>
    layers.{i}.blocks.{j}.mlp.fc1.* / fc2.*       features.{2i}.{j}.mlp.0.* / mlp.3.*
    layers.{i}.downsample.<reduction|norm>.*      features.{2i+1}.<same>
    norm.*  (mmaction2: norm{last stage}.*)       norm.*

``relative_position_index`` buffers are deterministic functions of the window size: they are
regenerated and the source copy is only checked. ``attn_mask`` buffers (kept by some 2-D
Swin variants) are computed at run time and dropped. Non-backbone keys (``cls_head.*``) are
dropped with a note. Anything else, or any backbone key the network lacks or misses, is an
error listing the keys: loading a wrong file never passes silently.
"""
import itertools
import re
from collections import OrderedDict

import torch

from ...utils.safe_load import CheckpointError, torch_load_safe

CONVERTED_FORMAT = 'vedatad.VideoSwin'
CONVERTED_VERSION = 1

_BLOCK = re.compile(r'^layers\.(\d+)\.blocks\.(\d+)\.(.+)$')
_DOWNSAMPLE = re.compile(r'^layers\.(\d+)\.downsample\.(.+)$')
_FINAL_NORM = re.compile(r'^norm(\d*)\.(weight|bias)$')
_MLP_OFFICIAL_TO_TV = {'mlp.fc1.': 'mlp.0.', 'mlp.fc2.': 'mlp.3.'}
_NON_BACKBONE_PREFIXES = ('cls_head.', 'data_preprocessor.', 'neck.')


class VSwinCheckpointError(RuntimeError):
    """A checkpoint that does not fit the network; the message names the file and keys."""


def _strip_prefixes(state_dict):
    """Drop DDP ``module.`` prefixes so both saved forms are read the same way."""
    out = OrderedDict()
    for key, value in state_dict.items():
        out[key[len('module.'):] if key.startswith('module.') else key] = value
    return out


def official_key_to_vedatad(key):
    """Map one official backbone key (without ``backbone.``) to a VideoSwin key.

    Returns the new key, or None when the key is a buffer rebuilt at run time
    (``attn_mask``). Raises KeyError for keys of no known layout.
    """
    if 'attn_mask' in key:
        return None
    if key.startswith('patch_embed.'):
        return key
    match = _BLOCK.match(key)
    if match:
        stage, block, rest = match.groups()
        for old, new in _MLP_OFFICIAL_TO_TV.items():
            if rest.startswith(old):
                rest = new + rest[len(old):]
        return f'features.{2 * int(stage)}.{block}.{rest}'
    match = _DOWNSAMPLE.match(key)
    if match:
        stage, rest = match.groups()
        return f'features.{2 * int(stage) + 1}.{rest}'
    match = _FINAL_NORM.match(key)
    if match:
        return f'norm.{match.group(2)}'
    raise KeyError(key)


def vedatad_key_to_official(key, num_stages, layout='official'):
    """Inverse of ``official_key_to_vedatad`` (used to export and in tests).

    layout: 'official' names the last norm ``norm``, 'mmaction2' ``norm{num_stages-1}``.
    """
    if key.startswith('patch_embed.'):
        return key
    if key.startswith('norm.'):
        name = 'norm' if layout == 'official' else f'norm{num_stages - 1}'
        return f'{name}.{key.split(".", 1)[1]}'
    match = re.match(r'^features\.(\d+)\.(.+)$', key)
    if not match:
        raise KeyError(key)
    idx, rest = int(match.group(1)), match.group(2)
    if idx % 2:
        return f'layers.{idx // 2}.downsample.{rest}'
    block, rest = rest.split('.', 1)
    for old, new in _MLP_OFFICIAL_TO_TV.items():
        if rest.startswith(new):
            rest = old + rest[len(new):]
    return f'layers.{idx // 2}.blocks.{block}.{rest}'


def split_checkpoint(ckpt):
    """Return (state_dict, kind) where kind is 'converted', 'official' or 'unknown'."""
    if not isinstance(ckpt, dict):
        return None, 'unknown'
    meta = ckpt.get('meta') or {}
    if isinstance(meta, dict) and meta.get('format') == CONVERTED_FORMAT:
        return ckpt['state_dict'], 'converted'
    state_dict = ckpt.get('state_dict', ckpt.get('model', ckpt))
    if not isinstance(state_dict, dict):
        return None, 'unknown'
    keys = list(_strip_prefixes(state_dict))
    if any(k.startswith('backbone.layers.') for k in keys):
        return _strip_prefixes(state_dict), 'official'
    if any(k.startswith('features.') for k in keys) and 'patch_embed.proj.weight' in keys:
        return _strip_prefixes(state_dict), 'converted'
    return state_dict, 'unknown'


def convert_official_state_dict(state_dict):
    """Official/mmaction2 state dict -> (VideoSwin state dict, report).

    report: {'mapped': [(src, dst)], 'dropped': [(src, why)], 'index_buffers': {dst: tensor}}
    (source relative_position_index buffers, kept for checking against the network).
    """
    out, mapped, dropped, index_buffers, unknown = OrderedDict(), [], [], {}, []
    for src, value in _strip_prefixes(state_dict).items():
        if src.startswith(_NON_BACKBONE_PREFIXES):
            dropped.append((src, 'not part of the backbone (classification head etc.)'))
            continue
        if not src.startswith('backbone.'):
            unknown.append(src)
            continue
        try:
            dst = official_key_to_vedatad(src[len('backbone.'):])
        except KeyError:
            unknown.append(src)
            continue
        if dst is None:
            dropped.append((src, 'attention mask, computed at run time'))
        elif dst.endswith('relative_position_index'):
            index_buffers[dst] = value
            mapped.append((src, dst))
        else:
            out[dst] = value
            mapped.append((src, dst))
    if unknown:
        raise VSwinCheckpointError(
            f'{len(unknown)} source keys of no known Video Swin layout: {unknown[:20]}')
    return out, dict(mapped=mapped, dropped=dropped, index_buffers=index_buffers)


def _window_from_table(table_len, tokens):
    """(Wd, Wh, Ww) with (2Wd-1)(2Wh-1)(2Ww-1) == table_len and Wd*Wh*Ww == tokens."""
    for wd, wh in itertools.product(range(1, 65), range(1, 65)):
        if (2 * wd - 1) * (2 * wh - 1) ** 2 == table_len and (tokens is None
                                                              or wd * wh * wh == tokens):
            return [wd, wh, wh]
    raise VSwinCheckpointError(f'cannot infer the window size from a relative position '
                               f'table of {table_len} rows')


def infer_arch(state_dict):
    """Architecture of a VideoSwin-layout state dict (converted keys)."""
    proj = state_dict['patch_embed.proj.weight']  # C0, 3, pt, ph, pw
    stages = sorted({int(k.split('.')[1]) for k in state_dict if k.startswith('features.')})
    depths, heads = [], []
    for idx in [i for i in stages if i % 2 == 0]:
        blocks = {int(k.split('.')[2]) for k in state_dict if k.startswith(f'features.{idx}.')}
        depths.append(len(blocks))
        heads.append(state_dict[f'features.{idx}.0.attn.relative_position_bias_table'].shape[1])
    table = state_dict['features.0.0.attn.relative_position_bias_table']
    fc1 = state_dict['features.0.0.mlp.0.weight']
    return dict(embed_dim=proj.shape[0], depths=depths, num_heads=heads,
                window_size=_window_from_table(table.shape[0], None),
                patch_size=list(proj.shape[2:]), mlp_ratio=fc1.shape[0] / fc1.shape[1])


def check_and_fill(model, state_dict, index_buffers=None, source='<state dict>'):
    """Compare keys and shapes with ``model``; regenerate relative_position_index buffers
    (checking any source copies). Returns a state dict ``model`` loads strictly."""
    target = model.state_dict()
    index_buffers = dict(index_buffers or {})
    full = OrderedDict(state_dict)
    index_keys = [k for k in target if k.endswith('relative_position_index')]
    sources = {k: index_buffers.pop(k, full.pop(k, None)) for k in index_keys}
    missing = [k for k in target if k not in full and k not in sources]
    unexpected = [k for k in full if k not in target] + list(index_buffers)
    if missing or unexpected:
        raise VSwinCheckpointError(
            f'{source} does not fit the network: missing keys {missing[:20]}'
            f'{" ..." if len(missing) > 20 else ""} ({len(missing)}), unexpected keys '
            f'{unexpected[:20]}{" ..." if len(unexpected) > 20 else ""} ({len(unexpected)})')
    wrong = [(k, tuple(full[k].shape), tuple(target[k].shape)) for k in full
             if tuple(full[k].shape) != tuple(target[k].shape)]
    if wrong:
        raise VSwinCheckpointError(f'{source}: shape mismatch (key, file, network): {wrong[:10]}')
    for key in index_keys:  # deterministic buffers: regenerate, but check any source copy
        src, ours = sources[key], target[key]
        if src is not None and (src.shape != ours.shape or not torch.equal(src, ours)):
            raise VSwinCheckpointError(
                f'{source}: {key} differs from the one of window size '
                f'{getattr(model, "window_size", "?")}: the checkpoint was trained with '
                'another window size')
        full[key] = ours.clone()
    return OrderedDict((k, full[k]) for k in target)


def _numpy_scalar_globals():
    """numpy scalars / dtypes that mmcv-era release files keep in their ``meta``."""
    import numpy as np
    found = [np.dtype] + [type(np.dtype(t)) for t in ('float16', 'float32', 'float64', 'int8',
                                                     'int16', 'int32', 'int64', 'uint8', 'bool')]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            found.append(__import__(module, fromlist=['scalar']).scalar)
            break
        except (ImportError, AttributeError):
            continue
    return found


def _load_file(path):
    """Tensors and plain containers only (``weights_only=True``): a checkpoint is never
    allowed to run code while loading; numpy scalars in release metadata are accepted."""
    try:
        return torch_load_safe(path, what='Video Swin checkpoint',
                               allowed_globals=_numpy_scalar_globals())
    except CheckpointError as err:
        raise VSwinCheckpointError(str(err)) from None


def read_vswin_state_dict(path):
    """Load a converted or official file -> (VideoSwin-layout state dict, report or None)."""
    state_dict, kind = split_checkpoint(_load_file(path))
    if kind == 'converted':
        return state_dict, None
    if kind == 'official':
        try:
            return convert_official_state_dict(state_dict)
        except VSwinCheckpointError as err:
            raise VSwinCheckpointError(f'{path}: {err}') from None
    raise VSwinCheckpointError(
        f'{path}: not a Video Swin checkpoint (expected a converted file or an official one '
        "with 'state_dict' holding 'backbone.layers.*' keys)")


def load_vswin_weights(model, path):
    """Load ``path`` (converted or official) into ``model`` strictly; errors name the file."""
    state_dict, report = read_vswin_state_dict(path)
    buffers = report['index_buffers'] if report else None
    model.load_state_dict(check_and_fill(model, state_dict, buffers, source=str(path)))
    return report
