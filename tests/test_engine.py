"""Engine: exact resume, schedules, weight-decay groups, EMA, atomic checkpoints, NaN guard,
two-process DDP training."""
import math
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from torch import nn

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.data.synthetic_features import SyntheticFeatureSpec, generate_synthetic_features
from vedatad.engine import ModelEMA, Trainer, build_scheduler, save_checkpoint, split_decay
from vedatad.engine.checkpoint import load_checkpoint
from vedatad.engine.config_resolve import resolve_config
from vedatad.engine.nonfinite import NonFiniteLossError
from vedatad.engine.testing import test as run_test
from vedatad.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO, 'configs', 'actionformer', 'synthetic_demo.py')
TINY_SPEC = SyntheticFeatureSpec(num_train=8, num_val=4, min_steps=64, max_steps=120,
                                 max_action=24, seed=5)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    return generate_synthetic_features(str(root), TINY_SPEC), str(root / 'features')


def tiny_cfg(tiny_data, **train_cfg):
    json_file, folder = tiny_data
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict({
        'train_dataset.json_file': json_file, 'train_dataset.feat_folder': folder,
        'val_dataset.json_file': json_file, 'val_dataset.feat_folder': folder,
        'eval.gt_json': json_file, 'train_dataloader.batch_size': 2,
        'model.max_seq_len': 128, 'train_dataset.max_seq_len': 128,
        'val_dataset.max_seq_len': 128, 'scheduler.warmup_epochs': 1,
    })
    cfg.merge_from_dict({f'train_cfg.{k}': v for k, v in
                         dict(dict(epochs=2, ckpt_interval=1), **train_cfg).items()})
    assert resolve_config(cfg) == []  # the model's facts come from the dataset, as in the tools
    return cfg


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_continues_exactly(tiny_data, tmp_path):
    torch.set_num_threads(1)
    straight = str(tmp_path / 'straight')
    Trainer(tiny_cfg(tiny_data), straight).run()
    split = str(tmp_path / 'split')
    Trainer(tiny_cfg(tiny_data, early_stop_epochs=1), split).run()
    assert not os.path.exists(os.path.join(split, 'epoch_002.pth.tar'))
    Trainer(tiny_cfg(tiny_data), split, resume='auto').run()
    a = load_checkpoint(os.path.join(straight, 'epoch_002.pth.tar'))
    b = load_checkpoint(os.path.join(split, 'epoch_002.pth.tar'))
    _assert_same_state(a['state_dict'], b['state_dict'])
    _assert_same_state(a['state_dict_ema'], b['state_dict_ema'])
    assert a['scheduler']['last_epoch'] == b['scheduler']['last_epoch'] == 8
    assert a['meta']['extra_state'] == b['meta']['extra_state']  # loss normaliser
    # the run changed the weights (the comparison above is not trivially true)
    first = load_checkpoint(os.path.join(split, 'epoch_001.pth.tar'))
    assert any(not torch.equal(first['state_dict'][k], a['state_dict'][k])
               for k in a['state_dict'])
    # the work dir has a log, the resolved config and TensorBoard events
    names = os.listdir(split)
    assert 'config.py' in names and any(n.endswith('.log') for n in names)
    assert os.listdir(os.path.join(split, 'tensorboard'))
    # test.py over several epochs: per-epoch outputs named by epoch
    rows = run_test(tiny_cfg(tiny_data), split, epochs=[1, 2], use_ema=False,
                    out=str(tmp_path / 'det.json'), metrics_out=str(tmp_path / 'm.json'))
    assert [name for name, _ in rows] == ['epoch 1', 'epoch 2']
    assert os.path.isfile(tmp_path / 'det_epoch_2.json')
    assert os.path.isfile(tmp_path / 'm_epoch_1.json')


def _lrs(kind, num_steps, **cfg):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, dict(type=kind, **cfg), iters_per_epoch=10)
    lrs = []
    for _ in range(num_steps):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return lrs


def test_warmup_cosine_schedule():
    lrs = _lrs('cosine', 60, warmup_epochs=2, total_epochs=6, eta_min=0.0)
    # linear ramp reaching the base rate at the last warm-up step (divides by steps - 1)
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(1 / 19)
    assert lrs[19] == pytest.approx(1.0) and lrs[20] == pytest.approx(1.0)
    assert lrs[40] == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert lrs[59] == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))


def test_warmup_multistep_schedule():
    lrs = _lrs('multistep', 50, warmup_epochs=1, total_epochs=5, steps=[1, 3], gamma=0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[19] == pytest.approx(1.0) and lrs[20] == pytest.approx(0.1)
    assert lrs[39] == pytest.approx(0.1) and lrs[40] == pytest.approx(0.01)


def test_weight_decay_groups_follow_reference(tiny_data):
    model = MODELS.build(tiny_cfg(tiny_data).model)
    decay, no_decay = split_decay(model)
    assert set(decay) | set(no_decay) == {n for n, _ in model.named_parameters()}
    assert all(n.endswith('weight') for n in decay)
    modules = dict(model.named_modules())
    for name in decay:
        owner = modules[name.rsplit('.', 1)[0]]
        assert isinstance(owner, (nn.Conv1d, nn.Linear)) or type(owner).__name__ == 'MaskedConv1D'
    assert any(n.endswith('bias') for n in no_decay)
    assert any(type(modules[n.rsplit('.', 1)[0]]).__name__ == 'LayerNorm' for n in no_decay)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match='table'):
        split_decay(Odd())


def test_lr_multiplier_groups():
    from vedatad.engine.optimizer import build_optimizer
    model = nn.Sequential()
    model.add_module('backbone', nn.Linear(2, 2))
    model.add_module('head', nn.Linear(2, 1))
    opt = build_optimizer(model, dict(type='AdamW', lr=0.1, weight_decay=0.05,
                                      lr_mult=dict(backbone=0.1)))
    by_name = {n: (g['lr'], g['weight_decay']) for g in opt.param_groups
               for n in g['param_names']}
    assert by_name['backbone.weight'] == (pytest.approx(0.01), 0.05)
    assert by_name['backbone.bias'] == (pytest.approx(0.01), 0.0)
    assert by_name['head.weight'] == (pytest.approx(0.1), 0.05)


def test_ema_update():
    model = nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9)
    before = ema.state_dict()['weight'].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.state_dict()['weight'], 0.9 * before + 0.1 * model.weight)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    work = str(tmp_path)
    save_checkpoint(work, {'epoch': 1, 'state_dict': {'w': torch.ones(2)}})

    def broken_replace(src, dst):
        raise OSError('disk full')
    import vedatad.utils.io as io_mod
    monkeypatch.setattr(io_mod.os, 'replace', broken_replace)
    with pytest.raises(OSError):
        save_checkpoint(work, {'epoch': 2, 'state_dict': {'w': torch.zeros(2)}})
    monkeypatch.undo()
    latest = load_checkpoint(os.path.join(work, 'latest.pth.tar'))
    assert latest['epoch'] == 1 and torch.equal(latest['state_dict']['w'], torch.ones(2))
    assert sorted(os.listdir(work)) == ['epoch_001.pth.tar', 'latest.pth.tar']  # no debris


@MODELS.register_module(force=True)
class NaNOnSomeSteps(nn.Module):
    """Test model: finite loss except on the listed global iterations."""

    def __init__(self, bad_iters=()):
        super().__init__()
        self.weight = nn.Linear(1, 1)
        self.bad_iters = set(bad_iters)
        self.current = -1

    def on_train_iter_start(self, global_iter):
        self.current = global_iter

    def forward(self, batch, mode='loss'):
        x = torch.stack([item['feats'].mean() for item in batch])[:, None]
        loss = self.weight(x).pow(2).mean()
        if self.current in self.bad_iters:
            loss = loss * float('nan')
        return {'final_loss': loss}


def test_nonfinite_guard_skips_then_stops(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, max_nonfinite_steps=3, epochs=3)
    cfg.model = dict(type='NaNOnSomeSteps', bad_iters=[1, 2])
    cfg.optimizer = dict(type='AdamW', lr=1e-3)
    trainer = Trainer(cfg, str(tmp_path / 'a'))
    trainer.run()   # two isolated bad steps: skipped, training completes
    assert trainer.guard.total_skipped == 2
    assert all(torch.isfinite(p).all() for p in trainer.raw_model.parameters())
    cfg.model = dict(type='NaNOnSomeSteps', bad_iters=[5, 6, 7])
    with pytest.raises(NonFiniteLossError, match='3 consecutive steps'):
        Trainer(cfg, str(tmp_path / 'b')).run()


DDP_SCRIPT = '''
import os, sys, torch
from mmengine.config import Config
import vedatad.data, vedatad.models
from vedatad.engine import Trainer
cfg = Config.fromfile(sys.argv[1])
trainer = Trainer(cfg, sys.argv[2])
trainer.run()
rank = trainer.info.rank
seen = sorted(trainer.loader.sampler)
torch.save({'state': trainer.raw_model.state_dict(), 'indices': seen,
            'world': trainer.info.world_size}, os.path.join(sys.argv[2], f'rank{rank}.pt'))
'''


def test_two_process_gloo_training_keeps_ranks_equal(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, epochs=1)
    cfg_path = str(tmp_path / 'cfg.py')
    cfg.dump(cfg_path)
    script = tmp_path / 'ddp_train.py'
    script.write_text(DDP_SCRIPT)
    work = str(tmp_path / 'work')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                           '--nproc_per_node=2', str(script), cfg_path, work],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(os.path.join(work, 'rank0.pt'))
    r1 = torch.load(os.path.join(work, 'rank1.pt'))
    assert r0['world'] == r1['world'] == 2
    assert not set(r0['indices']) & set(r1['indices'])   # each rank its own videos
    _assert_same_state(r0['state'], r1['state'])
    ckpt = load_checkpoint(os.path.join(work, 'epoch_001.pth.tar'))
    _assert_same_state(ckpt['state_dict'], r0['state'])


# ------------------------------------------------------------------ strict sections, epochs

@pytest.mark.parametrize('key, value, hint', [
    ('train_cfg.epochz', 3, "train_cfg.epochs"),
    ('scheduler.warmup_epoch', 1, "scheduler.warmup_epochs"),
    ('train_dataloader.batchsize', 2, "train_dataloader.batch_size"),
    ('val_dataloader.num_worker', 0, "val_dataloader.num_workers"),
    ('optimizer.weight_decy', 0.1, "optimizer.weight_decay"),
    ('eval.tiou_threshold', [0.5], "eval.tiou_thresholds"),
    ('train_cfg.ema.decy', 0.9, "train_cfg.ema.decay"),
    ('load_from_stric', False, "load_from_strict"),
])
def test_unknown_engine_keys_are_errors_with_a_suggestion(tiny_data, tmp_path, key, value, hint):
    from vedatad.utils.config_keys import ConfigKeyError
    cfg = tiny_cfg(tiny_data)
    cfg.merge_from_dict({key: value})
    with pytest.raises(ConfigKeyError, match=f"did you mean '{hint}'"):
        if key.startswith(('val_dataloader', 'eval')):
            run_test(cfg, str(tmp_path / 'nothing'))
        else:
            Trainer(cfg, str(tmp_path / 'w'))
    assert not os.path.exists(tmp_path / 'w')   # refused before any work


def test_epochs_live_in_train_cfg():
    from vedatad.engine.config_schema import scheduler_section, train_cfg_section
    from vedatad.utils.config_keys import ConfigKeyError
    both = dict(train_cfg=dict(epochs=35), scheduler=dict(warmup_epochs=5, epochs=20))
    with pytest.raises(ConfigKeyError, match='train_cfg.epochs=35.*scheduler.epochs=20'):
        train_cfg_section(both)
    # the release's way of counting alone, or agreeing: the same total
    assert train_cfg_section(dict(scheduler=dict(warmup_epochs=5, epochs=30)))['epochs'] == 35
    agree = dict(train_cfg=dict(epochs=35), scheduler=dict(warmup_epochs=5, epochs=30))
    assert train_cfg_section(agree)['epochs'] == 35
    assert scheduler_section(agree, 35)['total_epochs'] == 35
    with pytest.raises(ConfigKeyError, match='train_cfg.epochs is not set'):
        train_cfg_section(dict(scheduler=dict(warmup_epochs=5)))
    with pytest.raises(ConfigKeyError, match='early_stop_epochs=40'):
        train_cfg_section(dict(train_cfg=dict(epochs=35, early_stop_epochs=40)))
    # every shipped config resolves, with its train_cfg.epochs as the one number
    from mmengine.config import Config
    for folder in ('actionformer', 'tallformer'):
        for name in sorted(os.listdir(os.path.join(REPO, 'configs', folder))):
            cfg = Config.fromfile(os.path.join(REPO, 'configs', folder, name))
            assert 'epochs' not in cfg.scheduler, name
            assert train_cfg_section(cfg)['epochs'] == cfg.train_cfg.epochs, name


def test_nonfinite_warning_names_the_videos():
    from vedatad.engine.nonfinite import NonFiniteGuard, batch_video_ids
    assert batch_video_ids([{'video_id': 'a'}, {'video_id': 'b'}]) == ['a', 'b']
    assert batch_video_ids({'imgs': None, 'metas': [{'video_id': 'v1'}]}) == ['v1']
    assert batch_video_ids({'imgs': None}) == []

    class Log:
        messages = []

        def warning(self, msg):
            self.messages.append(msg)
    guard = NonFiniteGuard(2, Log())
    nan = {'final_loss': torch.tensor(float('nan'))}
    assert guard.should_skip(nan, torch.device('cpu'), 'epoch 1 iteration 3', ['v7', 'v9'])
    assert 'videos v7, v9' in Log.messages[-1] and 'epoch 1 iteration 3' in Log.messages[-1]
    with pytest.raises(NonFiniteLossError, match='v8'):
        guard.should_skip(nan, torch.device('cpu'), 'epoch 1 iteration 4', ['v8'])
