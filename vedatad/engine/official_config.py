"""Convert a YAML config of the ActionFormer release into a vedatad config with the same
meaning.

The release fills every key a YAML leaves out from its defaults (recursing into sections
the YAML has), then copies ``input_dim``, ``num_classes``, ``max_seq_len`` and the
``train_cfg`` / ``test_cfg`` sections into ``model``. The same is done here; the result is
written as an explicit, self-contained Python config (no ``_base_``), so nothing depends on
vedatad's own defaults.
"""
import copy
import os
import pprint
import warnings

import numpy as np
import yaml

from ..evaluation.protocols import RELEASE_TIOUS

# The release's defaults (libs/core/config.py), as data.
RELEASE_DEFAULTS = {
    'init_rand_seed': 1234567891,
    'dataset_name': 'epic',
    'devices': ['cuda:0'],
    'train_split': ('training', ),
    'val_split': ('validation', ),
    'model_name': 'LocPointTransformer',
    'dataset': {
        'feat_stride': 16, 'num_frames': 32, 'default_fps': None, 'input_dim': 2304,
        'num_classes': 97, 'downsample_rate': 1, 'max_seq_len': 2304, 'trunc_thresh': 0.5,
        'crop_ratio': None, 'force_upsampling': False,
    },
    'loader': {'batch_size': 8, 'num_workers': 4},
    'model': {
        'backbone_type': 'convTransformer', 'fpn_type': 'identity', 'backbone_arch': (2, 2, 5),
        'scale_factor': 2,
        'regression_range': [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)],
        'n_head': 4, 'n_mha_win_size': -1, 'embd_kernel_size': 3, 'embd_dim': 512,
        'embd_with_ln': True, 'fpn_dim': 512, 'fpn_with_ln': True, 'fpn_start_level': 0,
        'head_dim': 512, 'head_kernel_size': 3, 'head_num_layers': 3, 'head_with_ln': True,
        'max_buffer_len_factor': 6.0, 'use_abs_pe': False, 'use_rel_pe': False,
    },
    'train_cfg': {
        'center_sample': 'radius', 'center_sample_radius': 1.5, 'loss_weight': 1.0,
        'cls_prior_prob': 0.01, 'init_loss_norm': 2000, 'clip_grad_l2norm': -1,
        'head_empty_cls': [], 'dropout': 0.0, 'droppath': 0.1, 'label_smoothing': 0.0,
    },
    'test_cfg': {
        'pre_nms_thresh': 0.001, 'pre_nms_topk': 5000, 'iou_threshold': 0.1, 'min_score': 0.01,
        'max_seg_num': 1000, 'nms_method': 'soft', 'nms_sigma': 0.5, 'duration_thresh': 0.05,
        'multiclass_nms': True, 'ext_score_file': None, 'voting_thresh': 0.75,
    },
    'opt': {
        'type': 'AdamW', 'momentum': 0.9, 'weight_decay': 0.0, 'learning_rate': 1e-3,
        'epochs': 30, 'warmup': True, 'warmup_epochs': 5, 'schedule_type': 'cosine',
        'schedule_steps': [], 'schedule_gamma': 0.1,
    },
}

DATASET_TYPES = {'thumos': 'Thumos14FeatureDataset', 'anet': 'ActivityNetFeatureDataset',
                 'epic': 'EpicKitchensFeatureDataset', 'ego4d': 'Ego4DFeatureDataset'}
# evaluation thresholds each dataset class of the release reports, computed as it does
# (numpy.linspace: 0.39999999999999997, not 0.4)
TIOU_THRESHOLDS = {name: np.linspace(*spec).tolist() for name, spec in RELEASE_TIOUS.items()}
MODEL_TYPES = {'LocPointTransformer': 'ActionFormer'}
PATH_KEYS = ('json_file', 'feat_folder', 'ext_score_file')
CKPT_FREQ = 5        # the release's train.py default (--ckpt-freq)
PRINT_FREQ = 10      # the release's train.py default (--print-freq)
EMA_DECAY = 0.999


def fill_defaults(defaults, config):
    """The release's merge: keys missing from ``config`` are taken from ``defaults``; sections
    present in both are merged recursively; values the YAML gives always win."""
    for key, value in defaults.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(config[key], dict):
            fill_defaults(value, config[key])
    return config


def load_release_config(path):
    """The config dict the release would build from a YAML file."""
    with open(path) as f:
        config = yaml.load(f, Loader=yaml.FullLoader) or {}
    if not isinstance(config, dict):
        raise ValueError(f'{path}: expected a mapping at the top level')
    config = fill_defaults(RELEASE_DEFAULTS, config)
    model = config['model']
    for key in ('input_dim', 'num_classes', 'max_seq_len'):
        model[key] = config['dataset'][key]
    model['train_cfg'] = config['train_cfg']
    model['test_cfg'] = config['test_cfg']
    return config


def _clean_path(value):
    if isinstance(value, str):
        return os.path.normpath(value) if value.startswith('./') else value
    if isinstance(value, (list, tuple)):
        return [_clean_path(v) for v in value]
    return value


def _number(value, where):
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            raise ValueError(f'{where}: expected a number, got {value!r}') from None
    return value


def _dataset_cfg(config, split, is_training):
    name = config['dataset_name']
    if name not in DATASET_TYPES:
        raise ValueError(f'dataset_name {name!r} is not supported ({sorted(DATASET_TYPES)})')
    data = {k: (_clean_path(v) if k in PATH_KEYS else v) for k, v in config['dataset'].items()}
    return {'type': DATASET_TYPES[name], **data, 'split': list(split), 'is_training': is_training}


def _model_cfg(config):
    model = copy.deepcopy(config['model'])
    model_type = MODEL_TYPES.get(config['model_name'])
    if model_type is None:
        raise ValueError(f'model_name {config["model_name"]!r} is not supported '
                         f'({sorted(MODEL_TYPES)})')
    test_cfg = model['test_cfg']
    test_cfg['ext_score_file'] = _clean_path(test_cfg.get('ext_score_file'))
    return {'type': model_type, **model}


def _epochs(opt):
    """(train_cfg.epochs, train_cfg.early_stop_epochs) for the release's ``opt`` section.

    The release's schedule spans ``epochs + warmup_epochs`` (``epochs`` without warm-up) and
    training stops after ``early_stop_epochs`` when given, else at the end of the schedule.
    """
    if opt['warmup']:
        total = opt['epochs'] + opt['warmup_epochs']
    else:
        total = opt['epochs']
        if 'early_stop_epochs' not in opt and opt['warmup_epochs']:
            warnings.warn(
                f'opt.warmup is false: the release would train {opt["warmup_epochs"]} epochs '
                'past the end of its cosine schedule (the rate rising again); the converted '
                f'config stops at the end of the schedule (train_cfg.epochs={total})')
    early_stop = opt.get('early_stop_epochs')
    if early_stop is not None and early_stop >= total:
        early_stop = None  # the end of the schedule comes first
    return total, early_stop


def convert_release_config(config, name='experiment'):
    """Ordered mapping of vedatad config entries for a release config dict."""
    opt, loader = config['opt'], config['loader']
    devices = len(config['devices'])  # the release scales lr / workers by the GPU count
    lr = _number(opt['learning_rate'], 'opt.learning_rate') * devices
    epochs, early_stop = _epochs(opt)
    entries = {
        'model': _model_cfg(config),
        'train_dataset': _dataset_cfg(config, config['train_split'], True),
        'val_dataset': _dataset_cfg(config, config['val_split'], False),
        'train_dataloader': {'batch_size': loader['batch_size'],
                             'num_workers': loader['num_workers'] * devices,
                             'collate_fn': 'list_collate'},
        'val_dataloader': {'batch_size': 1, 'num_workers': loader['num_workers'] * devices,
                           'collate_fn': 'list_collate'},
        'optimizer': {'type': opt['type'], 'lr': lr,
                      'weight_decay': _number(opt['weight_decay'], 'opt.weight_decay'),
                      'momentum': opt['momentum']},
        'scheduler': {'type': opt['schedule_type'], 'warmup': opt['warmup'],
                      'warmup_epochs': opt['warmup_epochs'],
                      'steps': list(opt['schedule_steps']), 'gamma': opt['schedule_gamma']},
        'train_cfg': {'epochs': epochs, 'early_stop_epochs': early_stop,
                      'ckpt_interval': CKPT_FREQ,
                      'clip_grad_l2norm': config['train_cfg']['clip_grad_l2norm'],
                      'ema': {'decay': EMA_DECAY}, 'log_interval': PRINT_FREQ,
                      'seed': config['init_rand_seed'], 'amp': None,
                      'max_nonfinite_steps': 10, 'lr_scale_with_world_size': True,
                      'find_unused_parameters': False},
        'eval': {'gt_json': _clean_path(config['dataset']['json_file']),
                 'subset': list(config['val_split'])[0],
                 'tiou_thresholds': TIOU_THRESHOLDS[config['dataset_name']]},
        'device': None,
        'work_dir': os.path.join(_clean_path(config.get('output_folder', 'ckpt')), name),
    }
    return entries


def _render_value(value, indent):
    if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
        pad = ' ' * (indent + 4)
        items = ''.join(f'{pad}{k}={_render_value(v, indent + 4)},\n' for k, v in value.items())
        return 'dict(\n' + items + ' ' * indent + ')'
    return pprint.pformat(value, width=100 - indent, compact=True)


def render_config(entries, source):
    lines = [f'# Converted from the ActionFormer release config {os.path.basename(source)}',
             '# by tools/convert_actionformer_config.py (release defaults merged in).', '']
    for key, value in entries.items():
        lines.append(f'{key} = {_render_value(value, 0)}')
    return '\n'.join(lines) + '\n'


def convert_yaml_file(yaml_path, out_path):
    """Convert ``yaml_path`` and write the Python config to ``out_path`` (atomic)."""
    from ..utils.io import atomic_write_text
    name = os.path.splitext(os.path.basename(yaml_path))[0]
    entries = convert_release_config(load_release_config(yaml_path), name)
    atomic_write_text(out_path, render_config(entries, yaml_path))
    return entries
