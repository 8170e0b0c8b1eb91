"""Optimiser with the reference's weight-decay split (decay only weights of conv / linear layers).

The ActionFormer release decays the weights of Linear, Conv1d and MaskedConv1D layers and
nothing else: biases, normalisation weights, learnable scales and relative position tables
are excluded. The same rule is applied here to any model (the classes are matched by name so
no model code is imported), extended to other convolutions for video backbones. A parameter
the rule does not cover is an error listing it, unless its name contains one of
``no_decay_keys``. ``lr_mult`` scales the learning rate of parameters by name prefix
(e.g. ``dict(backbone=0.1)``).
"""
import torch
from torch import nn

DECAY_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
DECAY_MODULE_NAMES = ('MaskedConv1D', )
NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NO_DECAY_MODULE_NAMES = ('LayerNorm', )
SCALE_MODULE_NAMES = ('Scale', 'AffineDropPath')
DEFAULT_NO_DECAY_KEYS = ('rel_pe', 'relative_position_bias_table', 'absolute_pos_embed')


def _decays(module, param_name):
    """True / False when the rule decides for a parameter owned directly by ``module``."""
    kind = type(module).__name__
    if param_name.endswith('bias'):
        return False
    if param_name.endswith('weight'):
        if isinstance(module, DECAY_MODULES) or kind in DECAY_MODULE_NAMES:
            return True
        if isinstance(module, NO_DECAY_MODULES) or kind in NO_DECAY_MODULE_NAMES:
            return False
    if param_name.endswith('scale') and kind in SCALE_MODULE_NAMES:
        return False
    return None


def split_decay(model, no_decay_keys=DEFAULT_NO_DECAY_KEYS):
    """(names with decay, names without) covering every trainable parameter exactly once."""
    decay, no_decay = set(), set()
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f'{module_name}.{param_name}' if module_name else param_name
            verdict = _decays(module, param_name)
            if verdict is None and any(key in full for key in no_decay_keys):
                verdict = False
            if verdict is True:
                decay.add(full)
            elif verdict is False:
                no_decay.add(full)
    # a weight shared by a decayed and a non-decayed owner would be ambiguous
    both = decay & no_decay
    if both:
        raise ValueError(f'parameters in both weight-decay groups: {sorted(both)}')
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    unassigned = trainable - decay - no_decay
    if unassigned:
        raise ValueError('no weight-decay rule for parameters '
                         f'{sorted(unassigned)}; add a name fragment to optimizer.no_decay_keys')
    return sorted(decay & trainable), sorted(no_decay & trainable)


def _lr_mult(name, lr_mult):
    matches = [prefix for prefix in lr_mult if name == prefix or name.startswith(prefix + '.')]
    return lr_mult[max(matches, key=len)] if matches else 1.0


def param_groups(model, weight_decay, lr, no_decay_keys=DEFAULT_NO_DECAY_KEYS, lr_mult=None):
    """Parameter groups: (decay, no decay) x learning-rate multiplier, names sorted."""
    params = dict(model.named_parameters())
    decay, no_decay = split_decay(model, no_decay_keys)
    groups = {}
    for is_decay, names in ((True, decay), (False, no_decay)):
        wd = weight_decay if is_decay else 0.0
        for name in names:
            mult = _lr_mult(name, lr_mult or {})
            group = groups.setdefault((is_decay, mult), {'params': [], 'weight_decay': wd,
                                                   'lr': lr * mult, 'param_names': []})
            group['params'].append(params[name])
            group['param_names'].append(name)
    return list(groups.values())


def build_optimizer(model, cfg):
    """AdamW (default) or SGD from ``cfg``: type, lr, weight_decay, momentum, betas, eps,
    no_decay_keys, lr_mult. Unlisted AdamW settings are PyTorch's defaults, as in the release."""
    cfg = dict(cfg)
    kind = cfg.pop('type', 'AdamW')
    lr = cfg.pop('lr')
    groups = param_groups(model, cfg.pop('weight_decay', 0.0), lr,
                          tuple(cfg.pop('no_decay_keys', DEFAULT_NO_DECAY_KEYS)),
                          cfg.pop('lr_mult', None))
    momentum = cfg.pop('momentum', 0.9)
    if 'betas' in cfg:
        cfg['betas'] = tuple(cfg['betas'])  # configs give lists
    if kind == 'AdamW':
        return torch.optim.AdamW(groups, lr=lr, **cfg)
    if kind == 'SGD':
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **cfg)
    raise ValueError(f'optimizer.type: unsupported optimizer {kind!r} (AdamW or SGD)')
