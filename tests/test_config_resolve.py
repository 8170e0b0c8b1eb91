"""Model facts written once: the model takes them from the dataset; contradictions and lengths
the model cannot take are named with both keys and the valid values."""
import json

import numpy as np
import pytest
from mmengine.config import Config

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.engine.config_resolve import resolve_config, resolve_or_raise
from vedatad.models import build_model
from vedatad.utils.config_keys import ConfigKeyError


def feature_cfg(**dataset):
    data = dict(type='Thumos14FeatureDataset', json_file='a.json', feat_folder='f',
                num_classes=20, input_dim=2048, max_seq_len=2304, **dataset)
    return Config(dict(model=dict(type='ActionFormer', n_mha_win_size=19),
                       train_dataset=dict(data, split=['validation']),
                       val_dataset=dict(data, split=['test'])))


def test_model_takes_the_dataset_facts():
    cfg = feature_cfg()
    assert resolve_config(cfg, use_data=False) == []
    assert (cfg.model.num_classes, cfg.model.input_dim, cfg.model.max_seq_len) == \
        (20, 2048, 2304)
    assert resolve_config(cfg, use_data=False) == []  # idempotent


def test_contradiction_names_both_keys_and_values():
    cfg = feature_cfg()
    cfg.model.num_classes = 21
    cfg.model.input_dim = 2048  # agreeing is fine
    problems = resolve_config(cfg, use_data=False)
    assert problems == ['model.num_classes=21 contradicts train_dataset.num_classes=20: remove '
                        'model.num_classes (the model takes it from the dataset) or make the '
                        'two agree']
    cfg = feature_cfg()
    cfg.val_dataset.input_dim = 1024
    assert any('train_dataset.input_dim=2048 contradicts val_dataset.input_dim=1024' in p
               for p in resolve_config(cfg, use_data=False))
    with pytest.raises(ConfigKeyError, match='val_dataset.input_dim=1024'):
        resolve_or_raise(cfg, use_data=False)


def test_invalid_max_seq_len_states_the_valid_values_at_once():
    cfg = feature_cfg()
    cfg.train_dataset.max_seq_len = 2300
    cfg.val_dataset.max_seq_len = 2300
    problems = resolve_config(cfg, use_data=False)
    assert len(problems) == 1
    assert 'train_dataset.max_seq_len=2300 does not suit the model' in problems[0]
    assert 'multiple of 576' in problems[0] and 'nearest valid values: 1728 or 2304' in problems[0]
    # the model's own message gives every level's need and the valid values, not one divisor
    with pytest.raises(ValueError) as err:
        build_model(dict(type='ActionFormer', input_dim=8, num_classes=2, max_seq_len=2300,
                         n_mha_win_size=19))
    assert '[18, 36, 72, 144, 288, 576]' in str(err.value)
    assert 'nearest valid values: 1728 or 2304' in str(err.value)


def test_test_mode_builds_the_model_training_built():
    cfg = feature_cfg()
    cfg.train_dataset.max_seq_len = 576
    assert resolve_config(cfg, 'test', use_data=False) == []
    assert cfg.model.max_seq_len == 576


def _generic_data(tmp_path, labels=('jump', 'run', 'sit'), dim=6):
    feats = tmp_path / 'feats'
    feats.mkdir(parents=True)
    database = {}
    for i in range(4):
        vid = f'v{i}'
        np.save(feats / f'{vid}.npy', np.zeros((40, dim), np.float32))
        database[vid] = {'subset': 'train' if i < 3 else 'val', 'duration': 10.0, 'fps': 10.0,
                         'annotations': [{'segment': [1.0, 3.0], 'label': labels[i % len(labels)]}]}
    (tmp_path / 'ann.json').write_text(json.dumps({'database': database}))
    data = dict(type='GenericFeatureDataset', json_file=str(tmp_path / 'ann.json'),
                feat_folder=str(feats), feat_stride=4, num_frames=8, max_seq_len=64)
    return Config(dict(model=dict(type='ActionFormer', n_mha_win_size=-1, backbone_arch=(2, 2, 3),
                                  regression_range=[(0, 4), (4, 8), (8, 16), (16, 10000)]),
                       train_dataset=dict(data, split='train'),
                       val_dataset=dict(data, split='val', is_training=False)))


def test_generic_dataset_facts_are_measured(tmp_path):
    cfg = _generic_data(tmp_path)
    assert resolve_config(cfg) == []
    assert (cfg.model.num_classes, cfg.model.input_dim, cfg.model.max_seq_len) == (3, 6, 64)
    model = build_model(cfg.model)
    assert model.cls_head.cls_head.conv.out_channels == 3
    cfg = _generic_data(tmp_path / 'b')
    cfg.model.input_dim = 7
    assert resolve_config(cfg) == ['model.input_dim=7 contradicts train_dataset.input_dim '
                                   '(measured from the data)=6: remove model.input_dim (the '
                                   'model takes it from the dataset) or make the two agree']


def tallformer_cfg(tmp_path, window=480, **detector):
    frames = tmp_path / 'frames'
    database = {}
    for i, label in enumerate(['a', 'b', 'c', 'a']):
        folder = frames / f'vid{i}'
        folder.mkdir(parents=True)
        (folder / 'meta.json').write_text(json.dumps(dict(num_frames=300, fps=15.0,
                                                          pattern='%05d.jpg')))
        database[f'vid{i}'] = {'subset': 'training', 'duration': 20.0, 'fps': 15.0,
                               'annotations': [{'segment': [1.0, 4.0], 'label': label}]}
    (tmp_path / 'ann.json').write_text(json.dumps({'database': database}))
    data = dict(type='GenericVideoDataset', ann_file=str(tmp_path / 'ann.json'),
                data_prefix=str(frames), subset='training', window_size=window)
    return Config(dict(
        model=dict(type='TALLFormer', backbone=dict(type='VideoSwin', arch='demo'),
                   tcm=dict(type='TemporalConsistencyModule', out_channels=64, num_heads=4),
                   detector=dict(type='ActionFormer', backbone_arch=(2, 2, 4),
                                 regression_range=[(0, 4), (4, 8), (8, 16), (16, 32),
                                                   (32, 10000)], **detector)),
        train_dataset=dict(data, mode='train'), val_dataset=dict(data, mode='test')))


def test_tallformer_takes_classes_from_labels_and_lengths_from_the_window(tmp_path):
    cfg = tallformer_cfg(tmp_path)
    assert resolve_config(cfg) == []
    # 480 frames / (2 frames per row x TCM stride 4) = 60 steps; pyramid stride 16 -> 64
    assert cfg.model.detector.max_seq_len == 64 and cfg.model.tcm.max_len == 60
    assert cfg.model.detector.num_classes == 3
    model = build_model(cfg.model)
    assert model.detector.padded_length(60) == 64


def test_tallformer_contradictions(tmp_path):
    cfg = tallformer_cfg(tmp_path, max_seq_len=50, num_classes=4)
    problems = resolve_config(cfg)
    text = '\n'.join(problems)
    assert "model.detector.num_classes=4 contradicts the 3 labels of train_dataset.ann_file" in text
    assert 'model.detector.max_seq_len=50 does not suit the model' in text
    assert 'nearest valid values: 48 or 64' in text and '60 detector steps' in text
    cfg = tallformer_cfg(tmp_path / 'b', max_seq_len=48)
    assert resolve_config(cfg) == [
        'model.detector.max_seq_len=48 is shorter than a window: train_dataset.window_size=480 '
        'frames give 60 detector steps (8 frames per step); use 64 (or remove the key: it is '
        'derived)']
    cfg = tallformer_cfg(tmp_path / 'd', window=100)
    assert any('train_dataset.window_size=100 is not a multiple of model.chunk_size=32' in p
               for p in resolve_config(cfg))
