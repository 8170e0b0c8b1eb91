"""The feature-based demo learns: a shortened run of configs/actionformer/synthetic_demo.py on
the synthetic features reaches average mAP >= 0.8 at tIoU 0.3:0.7, and tools/test.py writes
the submission and metrics files."""
import json
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.data.synthetic_features import SyntheticFeatureSpec, generate_synthetic_features
from vedatad.engine import train
from vedatad.engine.config_resolve import resolve_config
from vedatad.engine.testing import test as run_test

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'actionformer', 'synthetic_demo.py')


def test_synthetic_features_are_deterministic(tmp_path):
    spec = SyntheticFeatureSpec(num_train=3, num_val=2, seed=11)
    a = generate_synthetic_features(str(tmp_path / 'a'), spec)
    b = generate_synthetic_features(str(tmp_path / 'b'), spec)
    assert open(a).read() == open(b).read()
    for name in os.listdir(tmp_path / 'a' / 'features'):
        assert (tmp_path / 'a' / 'features' / name).read_bytes() == \
            (tmp_path / 'b' / 'features' / name).read_bytes()
    c = generate_synthetic_features(str(tmp_path / 'c'), SyntheticFeatureSpec(3, 2, seed=12))
    assert open(a).read() != open(c).read()


def test_short_demo_run_reaches_map(tmp_path):
    torch.set_num_threads(1)
    root = tmp_path / 'synthetic'
    json_file = generate_synthetic_features(str(root), SyntheticFeatureSpec())
    options = {
        'train_dataset.json_file': json_file, 'train_dataset.feat_folder': str(root / 'features'),
        'val_dataset.json_file': json_file, 'val_dataset.feat_folder': str(root / 'features'),
        'eval.gt_json': json_file,
        # a smaller budget than the demo: 6 epochs, faster EMA
        'scheduler.warmup_epochs': 1, 'train_cfg.epochs': 6,
        'train_cfg.ckpt_interval': 6, 'train_cfg.ema.decay': 0.95,
    }
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(options)
    assert resolve_config(cfg) == []  # the model's facts come from the dataset, as in the tools
    work = tmp_path / 'work'
    train(cfg, str(work))
    cfg_path = tmp_path / 'cfg.py'
    cfg.dump(str(cfg_path))
    out, metrics_path = tmp_path / 'det.json', tmp_path / 'metrics.json'
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'test.py'), str(cfg_path),
                           str(work), '--out', str(out), '--metrics', str(metrics_path)],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr
    assert 'Average mAP' in printed and '0.70' in printed
    metrics = json.load(open(metrics_path))
    assert set(metrics) >= {'tious', 'mAP', 'average_mAP', 'per_class_ap', 'recall'}
    assert metrics['tious'] == pytest.approx([0.3, 0.4, 0.5, 0.6, 0.7])
    assert metrics['average_mAP'] >= 0.8, metrics
    submission = json.load(open(out))
    assert len(submission['results']) == 16
    first = next(iter(submission['results'].values()))[0]
    assert first['label'].startswith('action_') and len(first['segment']) == 2
    check_official_checkpoint(cfg, work, tmp_path, metrics)


def check_official_checkpoint(cfg, work, tmp_path, metrics):
    """The same weights saved the way the release saves them ('module.' keys) give the same
    detections; a checkpoint with a key too many is refused, naming the key."""
    ours = torch.load(work / 'latest.pth.tar', weights_only=True)
    official = {'epoch': ours['epoch'], 'optimizer': {}, 'scheduler': {},
                'state_dict': {'module.' + k: v for k, v in ours['state_dict'].items()},
                'state_dict_ema': {'module.' + k: v for k, v in ours['state_dict_ema'].items()}}
    official_path = tmp_path / 'official.pth.tar'
    torch.save(official, official_path)
    rows = run_test(cfg, str(official_path), out=str(tmp_path / 'official_det.json'),
                    metrics_out=str(tmp_path / 'official_metrics.json'))
    assert rows[0][1]['average_mAP'] == pytest.approx(metrics['average_mAP'])
    official['state_dict_ema']['module.extra.weight'] = torch.zeros(1)
    torch.save(official, official_path)
    with pytest.raises(Exception, match='extra.weight'):
        run_test(cfg, str(official_path), out=str(tmp_path / 'x.json'),
                 metrics_out=str(tmp_path / 'y.json'))
