"""The engine's config sections: accepted keys, defaults, and the one rule for epochs.

One function per section, each strict (an unknown key is a ``ConfigKeyError`` naming it with a
close match): ``train_cfg_section``, ``optimizer_section``, ``scheduler_section``,
``dataloader_section`` (``train_dataloader`` / ``val_dataloader``), ``eval_section`` and
``load_from_section`` (the top-level ``load_from*`` keys). ``ENGINE_TOP_LEVEL_KEYS`` lists the
top-level keys the engine reads, for a whole-config check.

Epochs live in one place: ``train_cfg.epochs`` is the total number of epochs, warm-up
included; the schedule spans exactly these epochs (cosine: warm-up, then annealing to
``eta_min`` at the end of the last epoch). ``train_cfg.early_stop_epochs`` (the release's
``opt.early_stop_epochs``) stops training earlier without changing the schedule. The release's
way of counting, ``scheduler.epochs`` = epochs after warm-up, is still read: alone it gives
``train_cfg.epochs = scheduler.epochs + warmup_epochs``; given with a ``train_cfg.epochs`` that
disagrees it is an error naming both keys.
"""
import difflib

from ..utils.config_keys import ConfigKeyError, merge_section

TRAIN_CFG_DEFAULTS = dict(
    epochs=None,              # total epochs, warm-up included (required)
    early_stop_epochs=None,   # stop after this many epochs; the schedule is unchanged
    ckpt_interval=5,          # checkpoint every N epochs and after the last one
    clip_grad_l2norm=-1,      # <= 0: no clipping
    ema=dict(decay=0.999),    # model EMA (None: off); the EMA weights are the ones tested
    log_interval=10,          # iterations between log lines (0: none)
    seed=1234567891,
    amp=None,                 # None | 'bf16' | 'fp16' (CUDA only)
    max_nonfinite_steps=10,   # stop after this many consecutive NaN/inf losses
    lr_scale_with_world_size=True,
    find_unused_parameters=False)
EMA_DEFAULTS = dict(decay=0.999)
AMP_MODES = (None, 'bf16', 'fp16')

OPTIMIZER_DEFAULTS = dict(type='AdamW', lr=None, weight_decay=0.0, momentum=0.9, betas=None,
                          eps=None, amsgrad=None, nesterov=None, dampening=None,
                          no_decay_keys=None, lr_mult=None)
OPTIMIZER_TYPES = ('AdamW', 'SGD')

SCHEDULER_DEFAULTS = dict(type='cosine', warmup=True, warmup_epochs=5, steps=[], gamma=0.1,
                          eta_min=None, warmup_start_lr=0.0, epochs=None)
SCHEDULER_TYPES = ('cosine', 'multistep')

DATALOADER_DEFAULTS = dict(batch_size=1, num_workers=0, collate_fn=None)

EVAL_PROTOCOLS = ('actionformer', 'activitynet')
EVAL_DEFAULTS = dict(gt_json=None, subset=None, tiou_thresholds=None, protocol='actionformer')

LOAD_FROM_DEFAULTS = dict(load_from=None, load_from_strict=True, load_from_ema=True,
                          load_from_prefix=None)

ENGINE_TOP_LEVEL_KEYS = ('train_cfg', 'optimizer', 'scheduler', 'train_dataloader',
                         'val_dataloader', 'eval', 'work_dir', 'device', 'cpu_threads',
                         *LOAD_FROM_DEFAULTS)


def _section(cfg, name):
    value = cfg.get(name) if hasattr(cfg, 'get') else None
    if value is None:
        return {}
    if not hasattr(value, 'items'):
        raise ConfigKeyError(f"config key '{name}' must be a dict, got {value!r}")
    return dict(value)


def _positive_int(section, key, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigKeyError(f"{section}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def train_cfg_section(cfg):
    """``train_cfg`` with defaults, ``epochs`` resolved (see the module docstring)."""
    tcfg = merge_section('train_cfg', TRAIN_CFG_DEFAULTS, _section(cfg, 'train_cfg'))
    if tcfg['ema'] is not None:
        tcfg['ema'] = merge_section('train_cfg.ema', EMA_DEFAULTS, tcfg['ema'])
    if tcfg['amp'] not in AMP_MODES:
        raise ConfigKeyError(f"train_cfg.amp must be one of {AMP_MODES}, got {tcfg['amp']!r}")
    tcfg['epochs'] = resolve_epochs(tcfg.get('epochs'), _section(cfg, 'scheduler'))
    if tcfg['early_stop_epochs'] is not None:
        stop = _positive_int('train_cfg', 'early_stop_epochs', tcfg['early_stop_epochs'])
        if stop > tcfg['epochs']:
            raise ConfigKeyError(f"train_cfg.early_stop_epochs={stop} is past the end of the "
                                 f"schedule (train_cfg.epochs={tcfg['epochs']})")
    _positive_int('train_cfg', 'ckpt_interval', tcfg['ckpt_interval'])
    return tcfg


def resolve_epochs(train_epochs, scheduler):
    """Total epochs from ``train_cfg.epochs`` and the release-style ``scheduler.epochs``."""
    sched = merge_section('scheduler', SCHEDULER_DEFAULTS, scheduler)
    warmup = sched['warmup_epochs'] if sched['warmup'] else 0
    legacy = sched['epochs']
    if train_epochs is None and legacy is None:
        raise ConfigKeyError('train_cfg.epochs is not set: give the total number of epochs, '
                             'warm-up included')
    if legacy is not None:
        _positive_int('scheduler', 'epochs', legacy)
        if train_epochs is not None and train_epochs != legacy + warmup:
            raise ConfigKeyError(
                f'train_cfg.epochs={train_epochs} contradicts scheduler.epochs={legacy} '
                f'(+ scheduler.warmup_epochs={warmup} = {legacy + warmup} epochs): the number '
                'of epochs lives in train_cfg.epochs (warm-up included); remove scheduler.epochs '
                '(or set train_cfg.early_stop_epochs to stop before the end of the schedule)')
        train_epochs = legacy + warmup
    return _positive_int('train_cfg', 'epochs', train_epochs)


def optimizer_section(cfg):
    """``optimizer`` as keyword arguments for ``build_optimizer`` (unset keys dropped)."""
    given = _section(cfg, 'optimizer')
    opt = merge_section('optimizer', OPTIMIZER_DEFAULTS, given)
    if opt['type'] not in OPTIMIZER_TYPES:
        raise ConfigKeyError(f"optimizer.type must be one of {OPTIMIZER_TYPES}, "
                             f"got {opt['type']!r}")
    if opt['lr'] is None:
        raise ConfigKeyError('optimizer.lr is not set')
    other = ('nesterov', 'dampening') if opt['type'] == 'AdamW' else ('betas', 'eps', 'amsgrad')
    wrong = [k for k in other if opt[k] is not None]
    if wrong:
        raise ConfigKeyError(f"optimizer.{wrong[0]} does not apply to optimizer.type="
                             f"{opt['type']!r}")
    return {k: v for k, v in opt.items() if v is not None}


def scheduler_section(cfg, epochs):
    """``scheduler`` for ``build_scheduler``: ``epochs`` is the resolved total
    (``train_cfg_section``); the release-style ``scheduler.epochs`` is dropped."""
    sched = merge_section('scheduler', SCHEDULER_DEFAULTS, _section(cfg, 'scheduler'))
    if sched['type'] not in SCHEDULER_TYPES:
        raise ConfigKeyError(f"scheduler.type must be one of {SCHEDULER_TYPES}, "
                             f"got {sched['type']!r}")
    sched.pop('epochs')
    sched['total_epochs'] = epochs
    return sched


def dataloader_section(cfg, name):
    """``train_dataloader`` / ``val_dataloader`` with defaults."""
    loader = merge_section(name, DATALOADER_DEFAULTS, _section(cfg, name))
    _positive_int(name, 'batch_size', loader['batch_size'])
    _positive_int(name, 'num_workers', loader['num_workers'], minimum=0)
    return loader


def eval_section(cfg):
    """``eval``: gt_json, subset, tiou_thresholds (None: the dataset's), protocol."""
    ev = merge_section('eval', EVAL_DEFAULTS, _section(cfg, 'eval'))
    if ev['protocol'] not in EVAL_PROTOCOLS:
        raise ConfigKeyError(f"eval.protocol must be one of {EVAL_PROTOCOLS}, "
                             f"got {ev['protocol']!r}")
    return ev


def load_from_section(cfg):
    """The top-level ``load_from`` keys: initial weights for a fresh run (fine-tuning)."""
    given = {k: cfg.get(k) for k in LOAD_FROM_DEFAULTS if cfg.get(k) is not None}
    extra = sorted(str(k) for k in (cfg.keys() if hasattr(cfg, 'keys') else [])
                   if str(k).startswith('load_from') and k not in LOAD_FROM_DEFAULTS)
    if extra:
        lines = []
        for key in extra:
            close = difflib.get_close_matches(key, list(LOAD_FROM_DEFAULTS), n=1, cutoff=0.6)
            lines.append(f"unknown config key '{key}'"
                         + (f"; did you mean '{close[0]}'?" if close else ''))
        raise ConfigKeyError('\n'.join(lines)
                             + f'\n(load_from keys: {", ".join(LOAD_FROM_DEFAULTS)})')
    loaded = {**LOAD_FROM_DEFAULTS, **given}
    if not isinstance(loaded['load_from_strict'], bool):
        raise ConfigKeyError('load_from_strict must be True or False, got '
                             f"{loaded['load_from_strict']!r}")
    return loaded


def check_config_sections(cfg):
    """Every problem of the engine's sections that the config holds, as messages (empty when
    all are valid), for a whole-config check that reports everything at once. Sections the
    config leaves out are not judged here (the job that needs one says so when it starts)."""
    given = set(cfg.keys()) if hasattr(cfg, 'keys') else set()
    checks = [('train_cfg', lambda: train_cfg_section(cfg)),
              ('optimizer', lambda: optimizer_section(cfg)),
              ('scheduler', lambda: scheduler_section(cfg, None)),
              ('train_dataloader', lambda: dataloader_section(cfg, 'train_dataloader')),
              ('val_dataloader', lambda: dataloader_section(cfg, 'val_dataloader')),
              ('eval', lambda: eval_section(cfg)), (None, lambda: load_from_section(cfg))]
    problems = []
    for name, check in checks:
        if name is not None and name not in given:
            continue
        try:
            check()
        except ConfigKeyError as err:
            problems += [line for line in str(err).splitlines() if not line.startswith('(')]
    return problems
