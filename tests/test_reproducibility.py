"""Same config, same seed, same machine: the same weights, whichever folder the code is in.

The end-to-end demo's figure used to move between checkouts (78.69 vs 78.83 %, 81.7 % in a
fresh clone) while repeating exactly inside one: the template memory bank was filled by a
backbone with random weights drawn from the process's random state (PyTorch seeds its
default generator randomly at start-up), and a checkout reuses its bank. Two copies of the
code in two different paths now run the shortened pipeline (extraction with random weights,
then TALLFormer training) to bit-identical banks and checkpoints.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.membank import MemoryBank

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkout(dst):
    for part in ('vedatad', 'tools', 'configs'):
        shutil.copytree(os.path.join(REPO, part), os.path.join(dst, part),
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    return dst


PIPELINE = """
import sys
from mmengine.config import Config
import vedatad.data, vedatad.models
from vedatad.engine.extract import extract_features
from vedatad.engine import train
data = sys.argv[1]
ext = Config.fromfile('configs/extract/demo_tiny.py')
ext.merge_from_dict({'data.root': data + '/videos', 'data.ann_file': data + '/annotations.json',
                     'bank.path': 'data/bank'})
assert not extract_features(ext, progress=False).failed
cfg = Config.fromfile('configs/tallformer/demo_tiny.py')
cfg.merge_from_dict({
    'model.membank.template': 'data/bank', 'train_dataset.ann_file': data + '/annotations.json',
    'train_dataset.data_prefix': data + '/videos',
    'val_dataset.ann_file': data + '/annotations.json',
    'val_dataset.data_prefix': data + '/videos', 'train_cfg.epochs': 1,
    'scheduler.warmup_epochs': 0, 'train_cfg.ckpt_interval': 1, 'train_dataloader.batch_size': 2})
train(cfg, 'workdir/demo')
"""


def test_two_checkouts_train_to_identical_weights(tmp_path):
    data = tmp_path / 'videos'
    make_synthetic_videos(str(data), 4, 2, 64, 3, 0, 15, 2 / 3, 1)
    results = []
    for where in ('a', 'b c/a longer path/checkout'):
        # extraction (random weights) and training in a fresh process of each checkout
        checkout = _checkout(str(tmp_path / where))
        env = dict(os.environ, PYTHONPATH=checkout, OMP_NUM_THREADS='1')
        env.pop('PYTHONHASHSEED', None)
        proc = subprocess.run([sys.executable, '-c', PIPELINE, str(data)], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        bank = MemoryBank.open(os.path.join(checkout, 'data', 'bank'))
        feats = {v: bank.read_window(v, 0, bank.num_chunks(v)) for v in bank.video_ids()}
        ckpt = torch.load(os.path.join(checkout, 'workdir', 'demo', 'latest.pth.tar'),
                          weights_only=True)
        results.append((feats, ckpt))
    (bank_a, ckpt_a), (bank_b, ckpt_b) = results
    assert bank_a.keys() == bank_b.keys()
    for vid in bank_a:
        assert np.array_equal(bank_a[vid], bank_b[vid]), vid
    for key in ('state_dict', 'state_dict_ema'):
        for name, value in ckpt_a[key].items():
            assert torch.equal(value, ckpt_b[key][name]), (key, name)
    assert ckpt_a['meta']['extra_state'] == ckpt_b['meta']['extra_state']
