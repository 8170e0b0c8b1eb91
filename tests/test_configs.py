"""Every published ActionFormer config builds and takes one training step on random features
of the right shape (a tiny fake dataset replaces the real one; the model is the config's).

To keep the suite fast, ``max_seq_len`` (the length every training batch is padded to) is
lowered in the dataset section to a length the architecture accepts; it changes no layer or
parameter. The model takes its facts (classes, feature size, length) from the dataset, and the
config checks find nothing to object to.
"""
import glob
import json
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.engine import Trainer
from vedatad.engine.checks import check_config
from vedatad.engine.config_resolve import seq_len_multiple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = ['thumos_i3d', 'anet_tsp', 'anet_i3d', 'epic_slowfast_verb', 'epic_slowfast_noun',
             'ego4d_slowfast', 'ego4d_omnivore', 'ego4d_egovlp', 'ego4d_slowfast_egovlp',
             'ego4d_omnivore_egovlp', 'ego4d_slowfast_omnivore_egovlp']


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def config_path(name):
    return os.path.join(REPO, 'configs', 'actionformer', name + '.py')


def test_all_published_configs_exist():
    found = {os.path.basename(p)[:-3] for p in glob.glob(config_path('*'))}
    assert set(PUBLISHED) <= found and 'synthetic_demo' in found


def _folder_dims(ds_cfg):
    folders = ds_cfg.feat_folder if isinstance(ds_cfg.feat_folder, list) else [ds_cfg.feat_folder]
    dim = ds_cfg.input_dim
    if isinstance(dim, list):
        return list(dim)
    return [dim - 8 * (len(folders) - 1)] + [8] * (len(folders) - 1)


def _num_labels(ds_cfg):
    return 3 if ds_cfg.num_classes == 1 else min(ds_cfg.num_classes, 120)


def make_fake_data(cfg, root):
    """A fake annotation JSON and feature folders shaped like the config's dataset."""
    ds = cfg.train_dataset
    dims = _folder_dims(ds)
    folders = [os.path.join(root, f'feats{i}') for i in range(len(dims))]
    fps = ds.default_fps or 30.0
    steps = 50 if ds.type == 'ActivityNetFeatureDataset' else min(200, ds.max_seq_len)
    seconds_per_step = ds.feat_stride / fps
    labels = _num_labels(ds)
    subsets = [ds.split[0], ds.split[0], cfg.val_dataset.split[0]]
    database = {}
    for v, subset in enumerate(subsets):
        vid = f'vid{v}'
        mine = range(v % 2, labels, 2) if v < 2 else range(2)
        anns = [{'segment': [round(1 + 1.5 * j * seconds_per_step, 3),
                             round(1 + (1.5 * j + 1.2) * seconds_per_step, 3)],
                 'label': f'class{k}', 'label_id': k} for j, k in enumerate(mine)]
        database[vid] = {'subset': subset, 'duration': steps * seconds_per_step, 'fps': fps,
                         'annotations': anns}
        for folder, dim in zip(folders, dims):
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, (ds.file_prefix or '') + vid + ds.file_ext)
            feats = np.random.randn(steps, dim).astype(np.float32)
            if ds.file_ext == '.npz':
                np.savez(path, feats=feats)
            else:
                np.save(path, feats)
    json_file = os.path.join(root, 'ann.json')
    with open(json_file, 'w') as f:
        json.dump({'database': database}, f)
    folder_value = folders if isinstance(ds.feat_folder, list) else folders[0]
    return json_file, folder_value


def shorten(cfg):
    if cfg.train_dataset.type == 'ActivityNetFeatureDataset':
        return  # max_seq_len is also the resampled length (192)
    factor = seq_len_multiple(cfg.model)  # stride x window of the top level
    short = factor * max(1, 256 // factor)
    for node in (cfg.train_dataset, cfg.val_dataset):  # the model follows the dataset
        node.max_seq_len = short


@pytest.mark.parametrize('name', PUBLISHED)
def test_config_builds_and_trains_one_step(name, tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = Config.fromfile(config_path(name))
    shorten(cfg)
    json_file, folder = make_fake_data(cfg, str(tmp_path))
    for key in ('train_dataset', 'val_dataset'):
        cfg[key].json_file = json_file
        cfg[key].feat_folder = folder
    cfg.eval.gt_json = json_file
    cfg.train_dataloader.update(batch_size=1, num_workers=0)  # the model pads to max_seq_len
    cfg.train_cfg.update(epochs=1, ema=None)
    cfg.device = 'cpu'
    report = check_config(cfg, 'all', str(tmp_path / 'work'), progress=False)
    assert report.ok, report.format()
    for fact in ('num_classes', 'input_dim', 'max_seq_len'):  # written once, in the dataset
        assert _plain(cfg.model[fact]) == _plain(cfg.train_dataset[fact])
    trainer = Trainer(cfg, str(tmp_path / 'work'))
    assert type(trainer.raw_model).__name__ == 'ActionFormer'
    assert trainer.optimizer.param_groups[0]['weight_decay'] == cfg.optimizer.weight_decay
    batch = next(iter(trainer.loader))
    assert batch[0]['feats'].shape[0] == sum(_folder_dims(cfg.train_dataset))
    before = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    trainer.optimizer.param_groups[0]['lr'] = trainer.optimizer.param_groups[1]['lr'] = 1e-4
    losses = trainer.train_step(batch, 1, 'one step')
    assert losses is not None and np.isfinite(losses['final_loss'])
    after = trainer.raw_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    if trainer.writer is not None:
        trainer.writer.close()
