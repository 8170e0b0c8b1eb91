"""Engine side of memory-bank training: the working bank is copied once and refused when it
cannot continue a run exactly, bank / model / videos are checked before the first step,
every sample goes to one rank per epoch, and non-finite losses name the batch's videos."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn

import vedatad.data  # noqa: F401
from vedatad.data.synthetic_features import SyntheticFeatureSpec, generate_synthetic_features
from vedatad.engine import Trainer
from vedatad.engine.dataloader import build_dataloader
from vedatad.engine.training_bank import (check_bank_fits, open_working_bank,
                                          setup_training_bank)
from vedatad.membank import BankError, MemoryBank
from vedatad.registry import MODELS


@pytest.fixture()
def template(tmp_path):
    bank = MemoryBank.create(tmp_path / 'template', feat_dim=8, backbone='test')
    for vid, complete in (('a', True), ('b', True), ('c', False)):
        bank.add_video(vid, 64)
        bank.write_chunks(vid, [0, 1], np.ones((2, 16, 8), np.float32), step=-1)
        if complete:
            bank.mark_complete(vid)
    return tmp_path / 'template'


def membank(template=None, path=None, frozen=False):
    return dict(template=None if template is None else str(template),
                path=None if path is None else str(path), frozen=frozen)


def test_working_bank_is_copied_once_then_reused_on_resume(tmp_path, template, monkeypatch):
    copies = []
    real_copy = MemoryBank.copy.__func__
    monkeypatch.setattr(MemoryBank, 'copy', classmethod(
        lambda cls, src, dst, **kw: copies.append(dst) or real_copy(cls, src, dst, **kw)))
    work = tmp_path / 'work'
    bank = open_working_bank(membank(template), work, resume=False, rank=0)
    assert bank.path == work / 'membank' and bank.mode == 'r+' and len(copies) == 1
    bank.write_chunks('a', [0], np.zeros((1, 16, 8)), step=3)
    again = open_working_bank(membank(template), work, resume=True, rank=0)
    assert len(copies) == 1 and again.read_steps('a', 0, 1)[0] == 3  # the run's writes kept
    with pytest.raises(BankError, match='earlier run.*--resume'):
        open_working_bank(membank(template), work, resume=False, rank=0)
    with pytest.raises(BankError, match='resuming, but the working memory bank'):
        open_working_bank(membank(template), tmp_path / 'other', resume=True, rank=0)
    with pytest.raises(BankError, match='model.membank.template is not set'):
        open_working_bank(membank(), tmp_path / 'none', resume=False, rank=0)
    # a bank named by path, without a template, is trained on as it is
    own = open_working_bank(membank(path=work / 'membank'), tmp_path / 'x', resume=False, rank=0)
    assert own.path == work / 'membank' and len(copies) == 1


def test_bank_model_and_videos_are_checked_before_training(tmp_path, template):
    bank = MemoryBank.open(template, 'r+')
    model = SimpleNamespace(feat_dim=8, chunk_size=32, frames_per_row=2, membank_cfg=None)
    videos = lambda *ids: SimpleNamespace(videos=[SimpleNamespace(video_id=v) for v in ids])
    check_bank_fits(bank, model, videos('a', 'b'))
    with pytest.raises(BankError, match=r"incomplete in the bank \(e\.g\. \['c'\]\)"):
        check_bank_fits(bank, model, videos('a', 'c'))
    with pytest.raises(BankError, match=r"not in the bank \(e\.g\. \['zz'\]\)"):
        check_bank_fits(bank, model, videos('a', 'zz'))
    wrong = SimpleNamespace(feat_dim=1024, chunk_size=16, frames_per_row=2)
    with pytest.raises(BankError, match='feature size: bank 8, backbone 1024(.|\n)*per chunk'):
        check_bank_fits(bank, wrong, videos('a'))
    # models without a bank need nothing; a bank model with a whole-window dataset is refused
    assert setup_training_bank(model, videos('a'), tmp_path) is None
    model.membank_cfg = membank(template)
    with pytest.raises(BankError, match='keep_ratio'):
        setup_training_bank(model, videos('a'), tmp_path)


def test_training_sampler_gives_every_sample_to_one_rank_per_epoch():
    data = list(range(7))
    for training, per_rank in ((True, 3), (False, 4)):
        seen = []
        for rank in (0, 1):
            loader = build_dataloader(data, dict(batch_size=1), training, 0, rank, 2)
            loader.sampler.set_epoch(3)
            seen.append(list(loader.sampler))
            assert len(seen[-1]) == per_rank
        if training:  # the remainder is dropped, never repeated on another rank
            assert not set(seen[0]) & set(seen[1])
        else:  # testing pads with repeats (the inference loop removes them)
            assert len(set(seen[0]) | set(seen[1])) == 7


@MODELS.register_module(force=True)
class NaNOnFirstStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Linear(1, 1)
        self.current = -1

    def on_train_iter_start(self, global_iter):
        self.current = global_iter

    def forward(self, batch, mode='loss'):
        x = torch.stack([item['feats'].mean() for item in batch])[:, None]
        loss = self.weight(x).pow(2).mean()
        return {'final_loss': loss * float('nan') if self.current == 0 else loss}


def test_nonfinite_warning_names_the_videos(tmp_path):
    spec = SyntheticFeatureSpec(num_train=4, num_val=2, min_steps=64, max_steps=80,
                                max_action=16, seed=3)
    json_file = generate_synthetic_features(str(tmp_path / 'synth'), spec)
    cfg = Config.fromfile(str(Path(__file__).resolve().parents[1] / 'configs' / 'actionformer'
                                  / 'synthetic_demo.py'))
    folder = str(tmp_path / 'synth' / 'features')
    cfg.merge_from_dict({'train_dataset.json_file': json_file, 'train_dataset.feat_folder': folder,
                         'val_dataset.json_file': json_file, 'val_dataset.feat_folder': folder,
                         'train_dataloader.batch_size': 2, 'train_dataset.max_seq_len': 128,
                         'train_dataloader.num_workers': 0, 'train_cfg.epochs': 1,
                         'scheduler.epochs': 1, 'scheduler.warmup_epochs': 0})
    cfg.model = dict(type='NaNOnFirstStep')
    cfg.optimizer = dict(type='AdamW', lr=1e-3)
    trainer = Trainer(cfg, str(tmp_path / 'work'))
    warnings = []
    trainer.guard.logger = SimpleNamespace(warning=warnings.append)
    first = next(iter(trainer.loader))  # the same first batch the epoch will see
    trainer.run()
    assert len(warnings) == 1 and 'non-finite loss at epoch 1 iteration 0' in warnings[0]
    ids = [item['video_id'] for item in first]
    assert f'; videos {", ".join(ids)})' in warnings[0]
