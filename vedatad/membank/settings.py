"""What determines a bank's features, and the comparison that refuses a job with others.

A bank records ``settings`` (group attribute) when it is created: ``backbone`` (type and
structure), ``weights`` (file name or None), ``weights_sha256``, ``init_seed`` (random
weights), ``fps``, ``resize``, ``crop_size``, ``mean``, ``std``, ``chunk_size``,
``frames_per_row``, ``feat_dim``. Features made with any other value are different
features, so a job whose settings differ from the bank's is refused with every difference
listed. Banks made before ``settings`` existed are compared on what their creation config
(``attrs['config']``) tells.
"""
import json
import os

SETTING_KEYS = ('backbone', 'weights', 'weights_sha256', 'init_seed', 'fps', 'resize',
                'crop_size', 'mean', 'std', 'chunk_size', 'frames_per_row', 'feat_dim')
DEFAULT_MEAN = (123.675, 116.28, 103.53)
DEFAULT_STD = (58.395, 57.12, 57.375)
# backbone config keys that do not change features computed in eval mode
EVAL_IRRELEVANT_KEYS = ('type', 'arch', 'pretrained', 'init_cfg', 'drop_path_rate', 'dropout',
                        'attention_dropout', 'frozen_stages', 'with_cp')


def _plain(value):
    """JSON form (tuples -> lists) so that recorded and configured values compare equal."""
    return json.loads(json.dumps(value, default=str))


def backbone_signature(backbone_cfg):
    """'Type(arch=..., key=value, ...)': the backbone's type, preset and any structure
    key given in its config (training-only keys such as drop_path_rate left out)."""
    cfg = dict(backbone_cfg)
    extra = ''.join(f', {k}={_plain(cfg[k])}' for k in sorted(cfg)
                    if k not in EVAL_IRRELEVANT_KEYS)
    return f"{cfg.get('type')}(arch={cfg.get('arch')}{extra})"


def weights_name(pretrained):
    return os.path.basename(str(pretrained)) if pretrained else None


def settings_from_config(attrs):
    """What an older bank's creation config says about its features (no weights hash or
    seed: those keys are left out and not compared)."""
    config = attrs.get('config') or {}
    data, backbone = config.get('data') or {}, config.get('backbone') or {}
    extract = config.get('extract') or {}
    out = dict(frames_per_row=attrs.get('frames_per_row'), feat_dim=attrs.get('feat_dim'),
               chunk_size=attrs.get('frames_per_chunk'))
    if backbone:
        out.update(backbone=backbone_signature(backbone),
                   weights=weights_name(backbone.get('pretrained')))
    if data:
        out.update(fps=data.get('fps'), resize=data.get('resize'),
                   crop_size=data.get('crop_size'), mean=data.get('mean', DEFAULT_MEAN),
                   std=data.get('std', DEFAULT_STD))
    if extract.get('chunk_size') is not None:
        out['chunk_size'] = extract['chunk_size']
    return _plain({k: v for k, v in out.items() if k in SETTING_KEYS})


def settings_differences(recorded, wanted):
    """[(key, recorded value, wanted value)] over the keys both sides know."""
    recorded, wanted = _plain(recorded or {}), _plain(wanted or {})
    return [(k, recorded[k], wanted[k]) for k in SETTING_KEYS
            if k in recorded and k in wanted and recorded[k] != wanted[k]]


def format_differences(bank_path, diffs, what='this job'):
    lines = [f'{bank_path}: the bank was made with other settings than {what}; mixing them '
             'would store incompatible features:']
    lines += [f'  {key}: bank {bank!r} vs config {cfg!r}' for key, bank, cfg in diffs]
    lines.append('Use another bank path (bank.path=...) or the settings the bank was made '
                 'with.')
    return '\n'.join(lines)
