"""Engine runs through the tools: bare checkpoint names and paths with spaces, hostile and
broken checkpoints, work-dir ownership (--resume / --overwrite), Ctrl-C, resumed schedules,
load_from, what checkpoints record."""
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from test_engine import tiny_cfg  # noqa: F401  (tiny synthetic-feature config)
from vedatad.data.synthetic_features import SyntheticFeatureSpec, generate_synthetic_features
from vedatad.engine import (CheckpointError, ResumeError, Trainer, UnsafeFileError,
                            WorkDirInUseError, load_model_weights)
from vedatad.engine.checkpoint import load_checkpoint
from vedatad.engine.scalars import read_scalars
from vedatad.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINVAL = os.path.join(REPO, 'tools', 'trainval.py')
TEST = os.path.join(REPO, 'tools', 'test.py')
ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth data')  # a space in every data path
    spec = SyntheticFeatureSpec(num_train=8, num_val=4, min_steps=64, max_steps=120,
                                max_action=24, seed=5)
    return generate_synthetic_features(str(root), spec), str(root / 'features')


@pytest.fixture(scope='module')
def trained(tiny_data, tmp_path_factory):
    """A finished 2-epoch run (checkpoint each epoch) in a work dir with a space."""
    torch.set_num_threads(1)
    work = str(tmp_path_factory.mktemp('runs') / 'work dir')
    Trainer(tiny_cfg(tiny_data), work).run()
    return work


def _tool(name):
    """A tool's module, to call its main() in this process (a subprocess per case costs
    seconds of imports)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'{name}_tool',
                                                  os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout)


def _dump(cfg, path):
    cfg.dump(str(path))
    return str(path)


# ------------------------------------------------------------------ A1: where test.py runs

def test_test_py_with_a_bare_checkpoint_name_and_paths_with_spaces(tiny_data, trained,
                                                                    tmp_path, monkeypatch):
    cfg_path = _dump(tiny_cfg(tiny_data), tmp_path / 'my config.py')
    tool = _tool('test')
    # in the checkpoint's own folder, the name as users type it
    monkeypatch.chdir(trained)
    assert tool.main([cfg_path, 'latest.pth.tar']) == 0
    assert os.path.isfile(os.path.join(trained, 'metrics.json'))
    assert any(n.startswith('test_') and n.endswith('.log') for n in os.listdir(trained))
    # from another folder, a relative path with a space
    other = tmp_path / 'another folder'
    other.mkdir()
    monkeypatch.chdir(other)
    rel = os.path.relpath(os.path.join(trained, 'epoch_001.pth.tar'), other)
    assert ' ' in rel
    assert tool.main([cfg_path, rel, '--metrics', 'm.json']) == 0
    assert json.loads((other / 'm.json').read_text())['average_mAP'] >= 0.0


# ------------------------------------------------------------------ B1: hostile checkpoints

class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch "{self.marker}"',))


def _hostile_checkpoint(path, marker, like):
    """A checkpoint that looks like ``like`` but runs ``touch MARKER`` when unpickled."""
    state = dict(like)
    state['meta'] = dict(state.get('meta') or {}, payload=_Hostile(marker))
    torch.save(state, path)
    return str(path)


def test_hostile_checkpoint_is_refused_everywhere(tiny_data, trained, tmp_path, capsys):
    marker = tmp_path / 'owned'
    ckpt = _hostile_checkpoint(tmp_path / 'bad ckpt.pth.tar', marker,
                               load_checkpoint(os.path.join(trained, 'latest.pth.tar')))
    plain = str(tmp_path / 'bad.pth.tar')
    os.link(ckpt, plain)
    cfg_path = _dump(tiny_cfg(tiny_data), tmp_path / 'cfg.py')
    test_tool, train_tool = _tool('test'), _tool('trainval')
    runs = {
        'test.py': (test_tool, [cfg_path, ckpt]),
        '--resume': (train_tool, [cfg_path, '--work-dir', str(tmp_path / 'w1'), '--resume',
                                  ckpt]),
        # (mmengine's --cfg-options parser drops spaces: a path without one here)
        'load_from': (train_tool, [cfg_path, '--work-dir', str(tmp_path / 'w2'),
                                   '--cfg-options', f'load_from={plain}']),
    }
    for what, (tool, args) in runs.items():
        assert tool.main(args) == 1, what
        err = capsys.readouterr().err
        named = plain if what == 'load_from' else ckpt
        assert f'error: {named}: refused' in err, (what, err[-2000:])
        assert not marker.exists(), f'{what}: the pickled command ran'
    # the library call raises the same error
    with pytest.raises(UnsafeFileError, match='bad ckpt'):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_external_score_pickle_is_plain_data_only(tmp_path):
    import numpy as np

    from vedatad.models.postprocess import load_external_scores
    good = tmp_path / 'scores.pkl'
    with open(good, 'wb') as f:  # the release's score files: video -> numpy class scores
        pickle.dump({'video_a': np.arange(4, dtype=np.float32), 'video_b': [0.1, 0.9]}, f,
                    protocol=2)
    scores = load_external_scores(good)
    assert scores['video_a'].tolist() == [0, 1, 2, 3] and scores['video_b'].tolist() == [0.1, 0.9]
    marker = tmp_path / 'owned'
    bad = tmp_path / 'bad.pkl'
    with open(bad, 'wb') as f:
        pickle.dump({'video_a': _Hostile(marker)}, f)
    with pytest.raises(UnsafeFileError, match='bad.pkl'):
        load_external_scores(bad)
    assert not marker.exists()


# ------------------------------------------------------------------ B2: broken files

def test_truncated_checkpoint_gets_an_error_naming_it(tiny_data, trained, tmp_path, capsys):
    data = open(os.path.join(trained, 'latest.pth.tar'), 'rb').read()
    broken = tmp_path / 'cut.pth.tar'
    broken.write_bytes(data[:len(data) // 3])
    with pytest.raises(CheckpointError, match='cut.pth.tar.*truncated or corrupted'):
        load_checkpoint(str(broken))
    assert _tool('test').main([_dump(tiny_cfg(tiny_data), tmp_path / 'cfg.py'),
                               str(broken)]) == 1
    err = capsys.readouterr().err
    assert f'error: {broken}: not a readable checkpoint' in err
    assert 'truncated or corrupted' in err


def test_stray_temp_checkpoint_is_removed_at_the_next_start(tiny_data, trained, tmp_path):
    work = str(tmp_path / 'run')
    Trainer(tiny_cfg(tiny_data, early_stop_epochs=1), work).run()
    stray = os.path.join(work, '.epoch_002.pth.tar.k3j2h1.tmp')  # a save killed half-way
    with open(stray, 'wb') as f:
        f.write(b'half a checkpoint')
    trainer = Trainer(tiny_cfg(tiny_data), work, resume='auto')
    assert not os.path.exists(stray)
    log = [n for n in os.listdir(work) if n.endswith('.log')]
    assert any(stray in open(os.path.join(work, n)).read() for n in log)
    trainer.run()
    assert os.path.isfile(os.path.join(work, 'epoch_002.pth.tar'))


# ------------------------------------------------------------------ B3: one run per work dir

def test_fresh_run_refuses_an_earlier_run_unless_told(tiny_data, tmp_path, capsys):
    work = str(tmp_path / 'exp')
    Trainer(tiny_cfg(tiny_data, early_stop_epochs=1), work).run()
    before = load_checkpoint(os.path.join(work, 'epoch_001.pth.tar'))['state_dict']
    with pytest.raises(WorkDirInUseError, match='--resume.*--overwrite'):
        Trainer(tiny_cfg(tiny_data), work)
    assert _tool('trainval').main([_dump(tiny_cfg(tiny_data), tmp_path / 'cfg.py'),
                                   '--work-dir', work]) == 1
    assert 'holds an earlier run' in capsys.readouterr().err
    # nothing was touched
    assert torch.equal(load_checkpoint(os.path.join(work, 'epoch_001.pth.tar'))['state_dict'][
        'cls_head.cls_head.conv.weight'], before['cls_head.cls_head.conv.weight'])
    # --overwrite moves the earlier run aside, whole, and starts afresh
    Trainer(tiny_cfg(tiny_data, seed=7), work, overwrite=True).run()
    aside = [p for p in os.listdir(tmp_path) if p.startswith('exp.old-')]
    assert len(aside) == 1
    moved = tmp_path / aside[0]
    assert {'epoch_001.pth.tar', 'latest.pth.tar', 'scalars.jsonl', 'config.py'} <= \
        set(os.listdir(moved))
    assert torch.equal(load_checkpoint(str(moved / 'epoch_001.pth.tar'))['state_dict'][
        'cls_head.cls_head.conv.weight'], before['cls_head.cls_head.conv.weight'])
    assert os.path.isfile(os.path.join(work, 'epoch_002.pth.tar'))
    assert not os.path.exists(os.path.join(work, 'tensorboard', 'old'))


@MODELS.register_module(force=True)
class BankedProbe(nn.Module):
    """Test model with run state like TALLFormer's working bank: copied from a template at
    the first start, rewritten by training."""

    def __init__(self, template):
        super().__init__()
        self.weight = nn.Linear(1, 1)
        self.template = template

    def run_state_paths(self, work_dir):
        return [os.path.join(work_dir, 'bank')]

    def setup_work_dir(self, work_dir, resume=False, rank=0):
        bank = os.path.join(work_dir, 'bank')
        if not os.path.exists(bank):
            os.makedirs(bank)
            with open(self.template) as src, open(os.path.join(bank, 'data'), 'w') as dst:
                dst.write(src.read())
        with open(os.path.join(bank, 'data'), 'a') as f:
            f.write(' trained')

    def forward(self, batch, mode='loss'):
        x = torch.stack([item['feats'].mean() for item in batch])[:, None]
        return {'final_loss': self.weight(x).pow(2).mean()}


def test_overwrite_discards_the_working_bank(tiny_data, tmp_path):
    template = tmp_path / 'template'
    template.write_text('extracted')
    cfg = tiny_cfg(tiny_data, early_stop_epochs=1)
    cfg.model = dict(type='BankedProbe', template=str(template))
    work = str(tmp_path / 'exp')
    # a first run that died before its first checkpoint still left a rewritten bank
    os.makedirs(os.path.join(work, 'bank'))
    with open(os.path.join(work, 'bank', 'data'), 'w') as f:
        f.write('extracted trained')
    with pytest.raises(WorkDirInUseError, match='bank'):
        Trainer(cfg, work)
    Trainer(cfg, work, overwrite=True).run()
    with open(os.path.join(work, 'bank', 'data')) as f:
        assert f.read() == 'extracted trained'   # copied again from the template, once


def test_tallformer_names_its_working_bank_as_run_state(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'tallformer', 'demo_tiny.py'))
    model = MODELS.build(cfg.model)
    assert model.run_state_paths('W') == [__import__('pathlib').Path('W/membank')]
    model.membank_cfg = dict(model.membank_cfg, frozen=True)
    assert model.run_state_paths('W') == []   # a frozen bank is read in place
    model.membank_cfg = dict(model.membank_cfg, frozen=False, path=str(tmp_path / 'b'),
                             template=str(tmp_path / 'b'))
    assert model.run_state_paths('W') == []   # the template itself is never moved


# ------------------------------------------------------------------ B4: Ctrl-C

def test_ctrl_c_stops_with_one_line_and_the_run_resumes(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, epochs=60, ckpt_interval=1)
    cfg.train_dataloader.num_workers = 1   # a DataLoader worker is running too
    cfg_path = _dump(cfg, tmp_path / 'cfg.py')
    work = str(tmp_path / 'work')
    proc = subprocess.Popen([sys.executable, TRAINVAL, cfg_path, '--work-dir', work],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while not os.path.exists(os.path.join(work, 'epoch_002.pth.tar')):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err[-3000:]
    last = [line for line in err.splitlines() if 'interrupted' in line]
    assert len(last) == 1 and 'last checkpoint' in last[0] and '--resume' in last[0]
    assert 'epoch_0' in last[0]
    done = max(int(n[6:9]) for n in os.listdir(work) if n.startswith('epoch_'))
    # the work dir resumes: two more epochs from where it stopped
    proc = _run([TRAINVAL, cfg_path, '--work-dir', work, '--resume', '--cfg-options',
                 f'train_cfg.early_stop_epochs={done + 2}'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.isfile(os.path.join(work, f'epoch_{done + 2:03d}.pth.tar'))
    assert [r['global_iter'] for r in read_scalars(work)] == list(range(4 * (done + 2)))


# ------------------------------------------------------------------ A5: resumed schedules

def test_extending_a_finished_run_keeps_the_final_rate(tiny_data, trained, tmp_path):
    work = str(tmp_path / 'ext')
    Trainer(tiny_cfg(tiny_data), work).run()   # 2 epochs: warm-up 1, cosine 1
    end_lr = read_scalars(work)[-1]['lr'][0]
    Trainer(tiny_cfg(tiny_data, epochs=4), work, resume='auto').run()
    lrs = [r['lr'][0] for r in read_scalars(work)]
    assert len(lrs) == 16
    assert max(lrs[8:]) <= 1e-8 + 1e-20 and lrs[8] <= end_lr   # never rises again
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_resume_refuses_another_schedule(tiny_data, tmp_path):
    work = str(tmp_path / 'sched')
    Trainer(tiny_cfg(tiny_data, early_stop_epochs=1, epochs=3), work).run()
    with pytest.raises(ResumeError, match='max_steps.*early_stop_epochs'):
        Trainer(tiny_cfg(tiny_data, epochs=2), work, resume='auto')
    cfg = tiny_cfg(tiny_data, epochs=3)
    cfg.optimizer.lr = 0.5
    with pytest.raises(ResumeError, match='base_lrs'):
        Trainer(cfg, work, resume='auto')
    Trainer(tiny_cfg(tiny_data, epochs=3, early_stop_epochs=2), work, resume='auto').run()
    # another batch size (as another number of processes): the schedule goes on in epochs
    cfg = tiny_cfg(tiny_data, epochs=3)
    cfg.train_dataloader.batch_size = 4
    Trainer(cfg, work, resume='auto').run()
    lrs = [r['lr'][0] for r in read_scalars(work)]
    assert len(lrs) == 4 + 4 + 2
    span = 3 - 1   # epochs after the warm-up epoch
    expected = 1e-8 + 0.5 * (1e-3 - 1e-8) * (1 + math.cos(math.pi * 1.5 / span))
    assert lrs[-1] == pytest.approx(expected)   # epoch 3, its second half, at 2 iterations


# ------------------------------------------------------------------ A3: load_from

def test_load_from_fine_tunes_with_fresh_state(tiny_data, trained, tmp_path):
    source = os.path.join(trained, 'latest.pth.tar')
    cfg = tiny_cfg(tiny_data)
    cfg.load_from = source
    trainer = Trainer(cfg, str(tmp_path / 'ft'))
    ema = load_checkpoint(source)['state_dict_ema']
    for name, value in trainer.raw_model.state_dict().items():
        assert torch.equal(value, ema[name]), name        # the EMA weights of the source
        assert torch.equal(trainer.ema.state_dict()[name], ema[name])  # EMA starts there
    assert trainer.start_epoch == 0 and not trainer.optimizer.state
    assert trainer.scheduler.last_epoch == 0
    assert trainer.raw_model.loss_normalizer == cfg.model.train_cfg.init_loss_norm

    # another number of classes: strict refuses, naming the head; non-strict re-initialises it
    cfg = tiny_cfg(tiny_data)
    cfg.load_from = source
    cfg.model.num_classes = 6
    cfg.train_dataset.num_classes = cfg.val_dataset.num_classes = 4
    with pytest.raises(CheckpointError, match='cls_head.cls_head.conv.weight'):
        Trainer(cfg, str(tmp_path / 'ft6'))
    cfg.load_from_strict = False
    trainer = Trainer(cfg, str(tmp_path / 'ft6b'))
    state = trainer.raw_model.state_dict()
    assert not torch.equal(state['cls_head.cls_head.conv.bias'][:4],
                           ema['cls_head.cls_head.conv.bias'])
    assert torch.equal(state['reg_head.offset_head.conv.weight'],
                       ema['reg_head.offset_head.conv.weight'])
    log = ''.join(open(os.path.join(tmp_path / 'ft6b', n)).read()
                  for n in os.listdir(tmp_path / 'ft6b') if n.endswith('.log'))
    assert 'other shape, re-initialised: cls_head.cls_head.conv.weight' in log
    # a misspelt key is an error
    cfg.load_from_strct = True
    with pytest.raises(Exception, match="did you mean 'load_from_strict'"):
        Trainer(cfg, str(tmp_path / 'ft6c'))


def test_load_from_maps_an_actionformer_onto_a_tallformer_detector(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'tallformer', 'demo_tiny.py'))
    tall = MODELS.build(cfg.model)
    detector_cfg = dict(cfg.model.detector, type='ActionFormer', input_dim=tall.tcm.out_channels)
    torch.manual_seed(5)
    feature_model = MODELS.build(detector_cfg)
    state = {'module.' + k: v for k, v in feature_model.state_dict().items()}
    path = str(tmp_path / 'feature_actionformer.pth.tar')
    torch.save({'epoch': 30, 'state_dict': state, 'state_dict_ema': state}, path)
    with pytest.raises(CheckpointError, match='missing in checkpoint: backbone'):
        load_model_weights(tall, path, prefix=None)       # strict: Swin and TCM are missing
    ckpt = load_model_weights(tall, path, prefix=None, strict=False)
    report = ckpt['load_report']
    assert report['prefix'] == 'detector.' and not report['unexpected']
    assert report['loaded'] == len(feature_model.state_dict())
    assert all(k.startswith(('backbone.', 'tcm.')) for k in report['missing'])
    for name, value in feature_model.state_dict().items():
        assert torch.equal(tall.state_dict()['detector.' + name], value), name


# ------------------------------------------------------------------ B7: checkpoint contents

def test_checkpoint_records_what_inference_needs(trained):
    ckpt = torch.load(os.path.join(trained, 'latest.pth.tar'), weights_only=True)
    meta = ckpt['meta']
    assert meta['classes'] == [f'action_{i}' for i in range(4)]
    assert meta['data'] == {'fps': 30.0, 'feat_stride': 4, 'feat_num_frames': 16,
                            'downsample_rate': 1, 'max_seq_len': 128,
                            'force_upsampling': False}
    assert 'ActionFormer' in meta['config'] and 'train_cfg' in meta['config']
    assert meta['schedule']['epochs'] == 2 and meta['iters_per_epoch'] == 4


# ------------------------------------------------------------------ A2: evaluation per protocol

def test_test_py_counts_a_duplicated_instance_once_eval_detections_twice(tiny_data, trained,
                                                                          tmp_path):
    import warnings

    from test_evaluation import loop_evaluate, release_clean

    from vedatad.data.annotations import load_annotations
    json_file, _ = tiny_data
    content = json.loads(open(json_file).read())
    val = [v for v in content['database'].values() if v['subset'] == 'validation']
    val[0]['annotations'].append(dict(val[0]['annotations'][0]))  # one duplicated instance
    gt = tmp_path / 'gt_dup.json'   # (no space: --cfg-options drops them)
    gt.write_text(json.dumps(content))
    # a detector that reports the annotated actions, shifted a little, plus false alarms
    (tmp_path / 'oracle_probe.py').write_text(ORACLE_MODULE)
    cfg = tiny_cfg(tiny_data)
    cfg.model = dict(type='OracleDetector')
    cfg.custom_imports = dict(imports=['oracle_probe'], allow_failed_imports=False)
    cfg_path = _dump(cfg, tmp_path / 'cfg.py')
    ckpt = str(tmp_path / 'oracle.pth.tar')
    torch.save({'epoch': 1, 'state_dict': {'scale': torch.ones(1)},
                'state_dict_ema': {'scale': torch.ones(1)}}, ckpt)
    det, ours = tmp_path / 'det.json', tmp_path / 'test_metrics.json'
    env = dict(ENV, PYTHONPATH=os.pathsep.join([REPO, str(tmp_path)]))
    proc = subprocess.run([sys.executable, TEST, cfg_path, ckpt, '--out', str(det), '--metrics',
                           str(ours), '--cfg-options', f'eval.gt_json={gt}'],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    anet = tmp_path / 'anet_metrics.json'
    proc = _run([os.path.join(REPO, 'tools', 'eval_detections.py'), str(gt), str(det),
                 '--subset', 'validation', '--tiou-thresholds', '0.3,0.4,0.5,0.6,0.7', '--json',
                 str(anet)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours, anet = json.loads(ours.read_text()), json.loads(anet.read_text())
    results = json.loads(det.read_text())['results']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        videos = load_annotations(str(gt), subset='validation')
    tious = [0.3, 0.4, 0.5, 0.6, 0.7]   # as the config gives them
    assert ours['tious'] == anet['tious'] == tious
    # test.py: the release's number (duplicate removed); eval_detections: ActivityNet's
    release = loop_evaluate(release_clean(videos), _release_relabelled(results, videos), tious)
    activitynet = loop_evaluate(videos, results, tious)
    assert ours['mAP'] == pytest.approx(release['mAP'], abs=1e-12)
    assert anet['mAP'] == pytest.approx(activitynet['mAP'], abs=1e-12)
    assert ours['ground_truth']['removed_instances'] == 1
    assert abs(ours['average_mAP'] - anet['average_mAP']) > 1e-4


ORACLE_MODULE = '''
import torch
from torch import nn
from vedatad.registry import MODELS


@MODELS.register_module()
class OracleDetector(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, batch, mode='predict'):
        out = []
        for item in batch:
            steps = item['segments'] if item['segments'] is not None else torch.zeros(0, 2)
            secs = (steps * item['feat_stride'] + 0.5 * item['feat_num_frames']) / item['fps']
            n = len(secs)
            shift = torch.linspace(-0.3, 0.3, max(n, 1))[:n, None]
            alarms = torch.tensor([[1.0, 2.0], [5.0, 9.0]])
            segs = torch.cat([secs + shift, alarms])
            scores = torch.cat([0.9 - 0.05 * torch.arange(n), torch.tensor([0.8, 0.3])])
            labels = torch.cat([item['labels'] if n else torch.zeros(0, dtype=torch.long),
                                torch.tensor([0, 1])])
            out.append({'video_id': item['video_id'], 'segments': segs, 'scores': scores,
                        'labels': labels})
        return out
'''


def _release_relabelled(results, videos):
    """Detections of classes without ground truth in the subset moved as the release does
    (independent of vedatad: label names are 'action_<id>')."""
    ids = sorted({int(s.label.split('_')[1]) for v in videos.values() for s in v.segments})
    out = {}
    for vid, dets in results.items():
        out[vid] = []
        for d in dets:
            i = int(d['label'].split('_')[1])
            if i in ids:
                out[vid].append(d)
            elif i < len(ids):
                out[vid].append(dict(d, label=f'action_{ids[i]}'))
    return out


def test_default_thresholds_are_the_release_linspace_of_the_family():
    from mmengine.config import Config

    from vedatad.engine.testing import evaluation_cfg
    cfg = Config(dict(eval=dict(gt_json='gt.json', subset='test')))
    for name, expected in [('Thumos14FeatureDataset', np.linspace(0.3, 0.7, 5)),
                           ('ActivityNetFeatureDataset', np.linspace(0.5, 0.95, 10)),
                           ('EpicKitchensFeatureDataset', np.linspace(0.1, 0.5, 5)),
                           ('Ego4DFeatureDataset', np.linspace(0.1, 0.5, 5))]:
        dataset = type(name, (), {'tiou_thresholds': (0.3, 0.5)})()
        ev = evaluation_cfg(cfg, dataset)
        assert ev['tiou_thresholds'] == expected.tolist(), name   # bit for bit
        assert ev['protocol'] == 'actionformer'
    cfg = Config(dict(eval=dict(gt_json='gt.json', tiou_thresholds='0.5:0.95:10',
                                protocol='activitynet')))
    ev = evaluation_cfg(cfg, type('VideoDataset', (), {'subset': 'validation'})())
    assert ev['subset'] == 'validation' and len(ev['tiou_thresholds']) == 10


# ------------------------------------------------------------------ infer.py on feature files

def test_infer_py_bare_names_and_an_official_checkpoint_with_class_names(
        tiny_data, trained, tmp_path, monkeypatch, capsys):
    json_file, folder = tiny_data
    cfg_path = _dump(tiny_cfg(tiny_data), tmp_path / 'my config.py')
    tool = _tool('infer')
    vid = sorted(json.loads(open(json_file).read())['database'])[0]
    npy = os.path.join(folder, f'{vid}.npy')
    monkeypatch.chdir(trained)  # bare file names, as users type them
    assert tool.main([cfg_path, 'latest.pth.tar', npy, '--out', 'dets.json',
                      '--no-progress']) == 0
    ours = json.loads(open(os.path.join(trained, 'dets.json')).read())['results'][vid]
    names = load_checkpoint(os.path.join(trained, 'latest.pth.tar'))['meta']['classes']
    assert ours and {d['label'] for d in ours} <= set(names)

    # the official release's layout records no classes: refused until --class-names names them
    state = load_checkpoint(os.path.join(trained, 'latest.pth.tar'))
    official = {'epoch': 2, 'state_dict': {f'module.{k}': v for k, v in
                                           state['state_dict'].items()},
                'state_dict_ema': {f'module.{k}': v for k, v in
                                   state['state_dict_ema'].items()}}
    torch.save(official, tmp_path / 'official.pth.tar')
    capsys.readouterr()
    args = [cfg_path, str(tmp_path / 'official.pth.tar'), npy, '--out',
            str(tmp_path / 'official dets.json'), '--no-progress',
            '--cfg-options', 'val_dataset.default_fps=30']
    assert tool.main(args) == 1
    assert '--class-names' in capsys.readouterr().err
    assert tool.main(args + ['--class-names', ','.join(names)]) == 0
    theirs = json.loads((tmp_path / 'official dets.json').read_text())['results'][vid]
    assert [d['label'] for d in theirs] == [d['label'] for d in ours]
    assert [t for d in theirs for t in d['segment']] == pytest.approx(
        [t for d in ours for t in d['segment']], abs=1e-4)
