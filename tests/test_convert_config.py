"""Release YAML -> vedatad config: defaults merged like the release, same meaning as the
hand-written configs/actionformer/*.py, paths kept."""
import os
import subprocess
import sys

import pytest
import yaml
from mmengine.config import Config

from vedatad.engine.config_resolve import resolve_config
from vedatad.engine.official_config import (convert_release_config, convert_yaml_file,
                                            fill_defaults, load_release_config)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The settings of the release's eleven YAML files (their content as data).
_EGO_RANGES8 = [[0, 4], [2, 8], [4, 16], [8, 32], [16, 64], [32, 128], [64, 256], [128, 10000]]
_EGO_TRAIN = {'init_loss_norm': 100, 'clip_grad_l2norm': 1.0, 'cls_prior_prob': 0.01,
              'center_sample': 'radius', 'center_sample_radius': 1.5, 'dropout': 0.1,
              'droppath': 0.1}
_EGO_TEST = {'pre_nms_topk': 5000, 'max_seg_num': 2000, 'min_score': 0.001, 'nms_sigma': 0.9,
             'multiclass_nms': True, 'voting_thresh': 0.95}
_OPT = {'epochs': 10, 'weight_decay': 0.05}


def _ego4d(folders, input_dim, num_frames=32, **model):
    return {
        'dataset_name': 'ego4d', 'train_split': ['training'], 'val_split': ['validation'],
        'dataset': {'json_file': './data/ego4d/annotations/ego4d.json',
                    'feat_folder': folders, 'file_prefix': None, 'file_ext': '.npy',
                    'num_classes': 110, 'input_dim': input_dim, 'feat_stride': 16,
                    'num_frames': num_frames, 'default_fps': 30, 'trunc_thresh': 0.3,
                    'crop_ratio': [0.9, 1.0], 'max_seq_len': 1024},
        'model': {'regression_range': _EGO_RANGES8, 'fpn_type': 'identity',
                  'backbone_arch': [2, 2, 7], 'max_buffer_len_factor': 4.0,
                  'n_mha_win_size': 9, 'use_abs_pe': True, **model},
        'opt': {'learning_rate': 0.0001, **_OPT}, 'loader': {'batch_size': 2},
        'train_cfg': _EGO_TRAIN, 'test_cfg': _EGO_TEST, 'output_folder': './ckpt/'}


def _anet(feat, json_name, input_dim, fps):
    return {
        'dataset_name': 'anet', 'train_split': ['training'], 'val_split': ['validation'],
        'dataset': {'json_file': f'./data/anet_1.3/annotations/{json_name}',
                    'feat_folder': f'./data/anet_1.3/{feat}', 'file_prefix': 'v_',
                    'file_ext': '.npy', 'num_classes': 1, 'input_dim': input_dim,
                    'feat_stride': 16, 'num_frames': 16, 'default_fps': fps,
                    'trunc_thresh': 0.5, 'crop_ratio': [0.9, 1.0], 'max_seq_len': 192,
                    'force_upsampling': True},
        'model': {'fpn_type': 'identity', 'max_buffer_len_factor': 1.0,
                  'n_mha_win_size': [7, 7, 7, 7, 7, -1], 'n_head': 4, 'embd_dim': 256,
                  'fpn_dim': 256, 'head_dim': 256, 'use_abs_pe': True},
        'opt': {'learning_rate': 0.001, **_OPT}, 'loader': {'batch_size': 16},
        'train_cfg': {'init_loss_norm': 200, 'clip_grad_l2norm': 1.0, 'cls_prior_prob': 0.01,
                      'center_sample': 'radius', 'center_sample_radius': 1.5,
                      'label_smoothing': 0.1, 'droppath': 0.1, 'loss_weight': 2.0},
        'test_cfg': {'voting_thresh': 0.9, 'pre_nms_topk': 2000, 'max_seg_num': 100,
                     'min_score': 0.001, 'multiclass_nms': False, 'nms_sigma': 0.75,
                     'ext_score_file': './data/anet_1.3/annotations/cuhk_val_simp_share.json',
                     'duration_thresh': 0.001},
        'output_folder': './ckpt/'}


def _epic(kind, num_classes, **train):
    return {
        'dataset_name': 'epic', 'train_split': ['training'], 'val_split': ['validation'],
        'dataset': {'json_file': f'./data/epic_kitchens/annotations/epic_kitchens_100_{kind}.json',
                    'feat_folder': './data/epic_kitchens/features', 'file_prefix': None,
                    'file_ext': '.npz', 'num_classes': num_classes, 'input_dim': 2304,
                    'feat_stride': 16, 'num_frames': 32, 'default_fps': 30,
                    'trunc_thresh': 0.3, 'crop_ratio': [0.9, 1.0], 'max_seq_len': 2304},
        'model': {'regression_range': [[0, 4], [2, 8], [4, 16], [8, 32], [16, 64], [32, 10000]],
                  'fpn_type': 'identity', 'max_buffer_len_factor': 4.0, 'n_mha_win_size': 9},
        'opt': {'learning_rate': 0.0001, 'epochs': 16, 'weight_decay': 0.05},
        'loader': {'batch_size': 2},
        'train_cfg': {'init_loss_norm': 250, 'clip_grad_l2norm': 1.0, 'cls_prior_prob': 0.01,
                      'center_sample': 'radius', 'center_sample_radius': 1.5, **train},
        'test_cfg': {'pre_nms_topk': 5000, 'max_seg_num': 2000, 'min_score': 0.001,
                     'nms_sigma': 0.4, 'multiclass_nms': True},
        'output_folder': './ckpt/'}


_EGO = './data/ego4d/'
RELEASE_YAMLS = {
    'thumos_i3d': {
        'dataset_name': 'thumos', 'train_split': ['validation'], 'val_split': ['test'],
        'dataset': {'json_file': './data/thumos/annotations/thumos14.json',
                    'feat_folder': './data/thumos/i3d_features', 'file_prefix': None,
                    'file_ext': '.npy', 'num_classes': 20, 'input_dim': 2048,
                    'feat_stride': 4, 'num_frames': 16, 'trunc_thresh': 0.5,
                    'crop_ratio': [0.9, 1.0], 'max_seq_len': 2304},
        'model': {'fpn_type': 'identity', 'max_buffer_len_factor': 6.0, 'n_mha_win_size': 19},
        'opt': {'learning_rate': 0.0001, 'epochs': 30, 'weight_decay': 0.05},
        'loader': {'batch_size': 2},
        'train_cfg': {'init_loss_norm': 100, 'clip_grad_l2norm': 1.0, 'cls_prior_prob': 0.01,
                      'center_sample': 'radius', 'center_sample_radius': 1.5},
        'test_cfg': {'voting_thresh': 0.7, 'pre_nms_topk': 2000, 'max_seg_num': 200,
                     'min_score': 0.001, 'multiclass_nms': True},
        'output_folder': './ckpt/'},
    'anet_tsp': _anet('tsp_features', 'anet1.3_tsp_filtered.json', 512, 15),
    'anet_i3d': _anet('i3d_features', 'anet1.3_i3d_filtered.json', 2048, 25),
    'epic_slowfast_verb': _epic('verb', 97),
    'epic_slowfast_noun': _epic('noun', 300, label_smoothing=0.1),
    'ego4d_slowfast': dict(_ego4d(_EGO + 'slowfast_features', 2304), model={
        **_ego4d('', 0)['model'], 'backbone_arch': [2, 2, 6],
        'regression_range': _EGO_RANGES8[:6] + [[64, 10000]]}),
    'ego4d_omnivore': _ego4d(_EGO + 'omnivore_features', 1536),
    'ego4d_egovlp': _ego4d(_EGO + 'egovlp_features', 256, num_frames=16, embd_dim=384,
                           fpn_dim=384, head_dim=384),
    'ego4d_slowfast_egovlp': _ego4d([_EGO + 'slowfast_features', _EGO + 'egovlp_features'],
                                    2560, n_head=12, embd_dim=768, fpn_dim=768, head_dim=768),
    'ego4d_omnivore_egovlp': _ego4d([_EGO + 'omnivore_features', _EGO + 'egovlp_features'],
                                    1792, n_head=12, embd_dim=768, fpn_dim=768, head_dim=768),
    'ego4d_slowfast_omnivore_egovlp': _ego4d(
        [_EGO + 'slowfast_features', _EGO + 'omnivore_features', _EGO + 'egovlp_features'],
        [2304, 1536, 256], n_head=16, embd_dim=[256, 384, 384], fpn_dim=1024, head_dim=1024),
}


def _plain(value):
    """Compare tuples and lists alike."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert(name, tmp_path, use_tool=False):
    yaml_path = tmp_path / f'{name}.yaml'
    yaml_path.write_text(yaml.safe_dump(RELEASE_YAMLS[name]))
    out = tmp_path / f'{name}.py'
    if not use_tool:
        convert_yaml_file(str(yaml_path), str(out))
        return Config.fromfile(str(out))
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools',
                                                        'convert_actionformer_config.py'),
                           str(yaml_path), str(out)], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr
    return Config.fromfile(str(out))


@pytest.mark.parametrize('name', sorted(RELEASE_YAMLS))
def test_converted_config_matches_handwritten(name, tmp_path):
    converted = _convert(name, tmp_path)
    ours = Config.fromfile(os.path.join(REPO, 'configs', 'actionformer', f'{name}.py'))
    assert resolve_config(ours, use_data=False) == []  # model facts come from the dataset
    assert _plain(converted.model.to_dict()) == _plain(ours.model.to_dict())
    for key in ('train_dataset', 'val_dataset'):
        assert _plain(converted[key].to_dict()) == _plain(ours[key].to_dict()), key
    for key in ('gt_json', 'subset'):
        assert converted.eval[key] == ours.eval[key], key
    # the release's numpy.linspace values (0.39999999999999997 for 0.4)
    assert converted.eval.tiou_thresholds == pytest.approx(ours.eval.tiou_thresholds, abs=1e-12)
    assert converted.optimizer.type == ours.optimizer.type
    for key in ('lr', 'weight_decay'):
        assert converted.optimizer[key] == pytest.approx(ours.optimizer[key]), key
    assert 'epochs' not in converted.scheduler and 'epochs' not in ours.scheduler
    for key in ('type', 'warmup', 'warmup_epochs', 'steps', 'gamma'):
        assert _plain(converted.scheduler[key]) == _plain(ours.scheduler[key]), key
    for key in ('epochs', 'clip_grad_l2norm', 'seed', 'ema'):
        assert _plain(converted.train_cfg[key]) == _plain(ours.train_cfg[key]), key
    assert converted.train_dataloader.batch_size == ours.train_dataloader.batch_size
    assert converted.work_dir == f'ckpt/{name}'


def test_command_line_tool(tmp_path):
    converted = _convert('thumos_i3d', tmp_path, use_tool=True)
    assert converted.model.n_mha_win_size == 19
    assert converted.train_dataset.feat_folder == 'data/thumos/i3d_features'


def test_defaults_merge_like_the_release(tmp_path):
    yaml_path = tmp_path / 'min.yaml'
    yaml_path.write_text('dataset_name: thumos\n'
                         'dataset: {json_file: ./a.json, feat_folder: ./f, file_prefix: ~,\n'
                         '          file_ext: .npy, num_classes: 5, input_dim: 64}\n'
                         'opt: {learning_rate: 1e-4, early_stop_epochs: 7}\n'
                         'train_cfg: {droppath: 0.3}\n')
    config = load_release_config(str(yaml_path))
    assert config['dataset']['max_seq_len'] == 2304          # default filled in a section
    assert config['model']['input_dim'] == 64                # derived from the dataset
    assert config['model']['train_cfg']['droppath'] == 0.3   # the YAML wins
    assert config['model']['train_cfg']['init_loss_norm'] == 2000
    entries = convert_release_config(config, 'min')
    assert entries['optimizer']['lr'] == pytest.approx(1e-4)  # "1e-4" is a string in YAML 1.1
    # the schedule spans 30 + 5 epochs; training stops after 7 (the release's early stop)
    assert entries['train_cfg']['epochs'] == 35
    assert entries['train_cfg']['early_stop_epochs'] == 7
    assert entries['train_dataset']['json_file'] == 'a.json'
    assert entries['train_dataset']['split'] == ['training']  # release default splits
    assert entries['val_dataset']['split'] == ['validation']


def test_fill_defaults_does_not_share_default_objects():
    defaults = {'a': {'b': [1, 2]}, 'c': [3]}
    first = fill_defaults(defaults, {})
    first['c'].append(4)
    first['a']['b'].append(5)
    assert defaults == {'a': {'b': [1, 2]}, 'c': [3]}


def test_unknown_dataset_name_is_an_error(tmp_path):
    yaml_path = tmp_path / 'bad.yaml'
    yaml_path.write_text('dataset_name: charades\ndataset: {json_file: a, feat_folder: b}\n')
    with pytest.raises(ValueError, match='charades'):
        convert_release_config(load_release_config(str(yaml_path)))
