"""TALLFormer resume is exact: N epochs straight and k epochs + resume to N give bit-identical
weights, EMA, extra state and working bank, and the same loss at every iteration; also after
a crash that left bank writes newer than the checkpoint (the bank is rolled back to it)."""
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.data.video_readers import open_video
from vedatad.engine import Trainer
from vedatad.engine.checkpoint import load_checkpoint
from vedatad.membank import MemoryBank

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'tallformer', 'demo_tiny.py')
EPOCHS, SPLIT = 3, 1


@pytest.fixture(scope='module')
def videos_and_bank(tmp_path_factory):
    """Six 8 s synthetic videos and a template bank of random (non-zero) features."""
    root = tmp_path_factory.mktemp('resume')
    make_synthetic_videos(root, num_videos=6, seconds=8, size=64, num_classes=3, seed=2)
    bank = MemoryBank.create(root / 'bank', feat_dim=128, backbone='VideoSwin-demo')
    rng = np.random.default_rng(0)
    for path in sorted((root / 'videos').glob('*.mp4')):
        vid = path.stem
        bank.add_video(vid, open_video(path).num_frames)
        n = bank.num_chunks(vid)
        bank.write_chunks(vid, list(range(n)), rng.standard_normal((n, 16, 128)), step=-1)
        bank.mark_complete(vid)
    return root


class LossRecorder(Trainer):
    """Records (global iteration, losses) of every step."""

    def train_step(self, batch, global_iter, where):
        losses = super().train_step(batch, global_iter, where)
        self.record.append((global_iter, losses))
        return losses


def make_cfg(root, stop=None):
    cfg = Config.fromfile(CONFIG)
    ann = str(root / 'annotations.json')
    cfg.merge_from_dict({
        'model.membank.template': str(root / 'bank'), 'train_dataset.ann_file': ann,
        'train_dataset.data_prefix': str(root / 'videos'), 'val_dataset.ann_file': ann,
        'val_dataset.data_prefix': str(root / 'videos'), 'eval.gt_json': ann,
        'train_cfg.epochs': EPOCHS, 'train_cfg.early_stop_epochs': stop,
        'train_cfg.ckpt_interval': 1, 'scheduler.warmup_epochs': 1,
        'train_dataloader.batch_size': 2,
        'train_dataloader.num_workers': 1})
    return cfg


def run(root, work, stop=None, resume=None):
    trainer = LossRecorder(make_cfg(root, stop), str(work), resume=resume)
    trainer.record = []
    trainer.run()
    return trainer.record


def bank_contents(path):
    bank = MemoryBank.open(path)
    return {vid: (bank.read_chunks(vid, range(bank.num_chunks(vid))),
                  bank.read_steps(vid, 0, bank.num_chunks(vid))) for vid in bank.video_ids()}


def _assert_same_state(a, b, what):
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f'{what}: {key}'


def test_resume_repeats_the_straight_run_bit_for_bit(videos_and_bank, tmp_path):
    torch.set_num_threads(1)
    root = videos_and_bank
    straight = run(root, tmp_path / 'straight')
    first = run(root, tmp_path / 'split', SPLIT)
    assert not (tmp_path / 'split' / f'epoch_{EPOCHS:03d}.pth.tar').exists()
    resumed = run(root, tmp_path / 'split', resume='auto')

    # the same losses at every iteration, before and after the resume
    assert [it for it, _ in straight] == [it for it, _ in first + resumed] == list(range(6))
    for (it, a), (_, b) in zip(straight, first + resumed):
        assert a == b, f'iteration {it}: {a} != {b}'

    a = load_checkpoint(str(tmp_path / 'straight' / f'epoch_{EPOCHS:03d}.pth.tar'))
    b = load_checkpoint(str(tmp_path / 'split' / f'epoch_{EPOCHS:03d}.pth.tar'))
    _assert_same_state(a['state_dict'], b['state_dict'], 'model')
    _assert_same_state(a['state_dict_ema'], b['state_dict_ema'], 'EMA')
    assert a['meta']['extra_state'] == b['meta']['extra_state']
    assert a['meta']['extra_state']['detector']['loss_normalizer'] != 20  # it moved
    # every chunk and step entry of the working banks, bit for bit
    banks = bank_contents(tmp_path / 'straight' / 'membank'), \
        bank_contents(tmp_path / 'split' / 'membank')
    assert banks[0].keys() == banks[1].keys()
    for vid in banks[0]:
        assert np.array_equal(banks[0][vid][0].view(np.uint16), banks[1][vid][0].view(np.uint16))
        assert np.array_equal(banks[0][vid][1], banks[1][vid][1]), vid
    written = sum(int((s >= 0).sum()) for _, s in banks[0].values())
    assert written >= 3  # training rewrote chunks: the comparison is not vacuous
    # and the run changed the weights after the resume point
    mid = load_checkpoint(str(tmp_path / 'split' / f'epoch_{SPLIT:03d}.pth.tar'))
    assert any(not torch.equal(mid['state_dict'][k], a['state_dict'][k]) for k in a['state_dict'])


def _assert_same_banks(a, b):
    banks = bank_contents(a), bank_contents(b)
    assert banks[0].keys() == banks[1].keys()
    for vid in banks[0]:
        assert np.array_equal(banks[0][vid][0].view(np.uint16), banks[1][vid][0].view(np.uint16))
        assert np.array_equal(banks[0][vid][1], banks[1][vid][1]), vid


def test_resume_after_a_crash_rolls_the_bank_back_to_the_checkpoint(videos_and_bank,
                                                                    tmp_path):
    """A run stopped after writing epoch 2 into the bank but before its checkpoint landed
    (emulated: epoch 2's checkpoint removed) resumes from epoch 1 and still repeats the
    straight run bit for bit; an older checkpoint than the bank's points is refused."""
    from vedatad.membank import BankError
    torch.set_num_threads(1)
    root = videos_and_bank
    straight = run(root, tmp_path / 'straight')
    crashed = tmp_path / 'crashed'
    run(root, crashed, stop=2)
    steps_epoch2 = {vid: s.copy() for vid, (_, s) in bank_contents(crashed / 'membank').items()}
    assert max(int(s.max()) for s in steps_epoch2.values()) >= 2  # epoch 2 wrote the bank
    for name in ('epoch_002.pth.tar', 'latest.pth.tar'):
        (crashed / name).unlink()
    resumed = run(root, crashed, resume='auto')
    assert [it for it, _ in resumed] == [2, 3, 4, 5]
    for (it, a), (_, b) in zip(straight[2:], resumed):
        assert a == b, f'iteration {it}: {a} != {b}'
    a = load_checkpoint(str(tmp_path / 'straight' / f'epoch_{EPOCHS:03d}.pth.tar'))
    b = load_checkpoint(str(crashed / f'epoch_{EPOCHS:03d}.pth.tar'))
    _assert_same_state(a['state_dict'], b['state_dict'], 'model')
    _assert_same_state(a['state_dict_ema'], b['state_dict_ema'], 'EMA')
    _assert_same_banks(tmp_path / 'straight' / 'membank', crashed / 'membank')
    # the bank keeps the points of its last two checkpoints: epoch 1 is gone by now
    with pytest.raises(BankError, match='no consistent point for iteration 2 .*--overwrite'):
        Trainer(make_cfg(root), str(tmp_path / 'straight'),
                resume=str(tmp_path / 'straight' / 'epoch_001.pth.tar'))


def test_fresh_start_refuses_an_earlier_runs_bank(videos_and_bank, tmp_path):
    from vedatad.engine.workdir import WorkDirInUseError
    (tmp_path / 'w').mkdir()
    MemoryBank.copy(videos_and_bank / 'bank', tmp_path / 'w' / 'membank')
    with pytest.raises(WorkDirInUseError, match='earlier run.*--resume'):
        Trainer(make_cfg(videos_and_bank), str(tmp_path / 'w'))
