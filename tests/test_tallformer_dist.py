"""TALLFormer trained end to end by two CPU processes (gloo) through tools/dist_trainval.sh on
synthetic videos: each rank writes its own videos' chunks into the shared working bank, the
ranks' weights stay equal, the template bank is left alone, and a resumed run keeps using the
working bank."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from vedatad.engine.checkpoint import load_checkpoint
from vedatad.membank import MemoryBank

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'tallformer', 'demo_tiny.py')
NUM_TRAIN = 4   # of 6 synthetic videos (2/3 training); each has 4 chunks of 32 frames

# Imported by trainval.py through the config's custom_imports: TALLFormer that records, per
# process, the videos it trained on, the chunks it wrote and its weights after each epoch.
PROBE_MODULE = '''
import os
import torch
import torch.distributed as dist
from vedatad.models.detectors.tallformer import TALLFormer
from vedatad.registry import MODELS


@MODELS.register_module()
class RankProbeTALLFormer(TALLFormer):
    def setup_work_dir(self, work_dir, resume=False, rank=0):
        super().setup_work_dir(work_dir, resume, rank)
        tag = 'resume' if resume else 'first'
        self.probe_path = os.path.join(work_dir, f'probe_{tag}_rank{rank}.pt')
        self.initial = {k: v.clone() for k, v in self.state_dict().items()}
        self.trained, self.written = [], []

    def forward_loss(self, batch):
        self.trained += [m['video_id'] for m in batch['metas']]
        return super().forward_loss(batch)

    def write_back(self, fresh, picks, first_chunks, video_ids):
        super().write_back(fresh, picks, first_chunks, video_ids)
        for vid, c0, p in zip(video_ids, first_chunks, picks):
            self.written += [(vid, int(c), self.train_iter) for c in c0 + p
                             if c < self.bank.num_chunks(vid)]

    def epoch_stats(self):
        torch.save({'initial': self.initial, 'state': self.state_dict(),
                    'trained': self.trained, 'written': self.written,
                    'world': dist.get_world_size() if dist.is_initialized() else 1},
                   self.probe_path)
        return super().epoch_stats()
'''


def _run(cmd, env, timeout=240):
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}'


def _all_steps(bank):
    """{(video_id, chunk): last-written step} over the whole bank."""
    out = {}
    for vid in bank.video_ids():
        n = bank.num_chunks(vid)
        for chunk, step in enumerate(bank.read_steps(vid, 0, n)):
            out[(vid, chunk)] = int(step)
    return out


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _latest_writes(*records):
    """{(video_id, chunk): step} of the last write of each chunk over the given records."""
    latest = {}
    for vid, chunk, step in sorted((r for rec in records for r in rec), key=lambda r: r[2]):
        latest[(vid, chunk)] = step
    return latest


@pytest.fixture
def synthetic_bank(tmp_path):
    """Six 8 s synthetic videos at 64 px and their template bank, all steps -1."""
    data = tmp_path / 'data'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    _run([sys.executable, 'tools/data/make_synthetic_videos.py', str(data), '--num-videos', '6',
          '--seconds', '8', '--size', '64', '--seed', '0'], env)
    _run([sys.executable, 'tools/data/extract_features.py', '--config',
          'configs/extract/demo_tiny.py', '--cfg-options', f'data.root={data}/videos',
          f'data.ann_file={data}/annotations.json', f'bank.path={data}/bank'], env)
    return data


def _write_config(tmp_path, data):
    ann = str(data / 'annotations.json')
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({
        'model.type': 'RankProbeTALLFormer', 'model.membank.template': str(data / 'bank'),
        'train_dataset.ann_file': ann, 'train_dataset.data_prefix': str(data / 'videos'),
        'val_dataset.ann_file': ann, 'val_dataset.data_prefix': str(data / 'videos'),
        'eval.gt_json': ann, 'train_cfg.epochs': 2, 'train_cfg.early_stop_epochs': 1,
        'scheduler.warmup_epochs': 0, 'train_dataloader.batch_size': 1,
        'train_dataloader.num_workers': 0})
    cfg.custom_imports = dict(imports=['rank_probe'], allow_failed_imports=False)
    path = str(tmp_path / 'cfg.py')
    cfg.dump(path)
    (tmp_path / 'rank_probe.py').write_text(PROBE_MODULE)
    return path


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()
                         and shutil.which('bash')),
                    reason='needs torch.distributed with gloo and bash for torchrun')
def test_two_ranks_share_the_bank_and_stay_equal_then_resume(synthetic_bank, tmp_path):
    cfg_path = _write_config(tmp_path, synthetic_bank)
    work = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join([REPO, str(tmp_path)]))
    _run(['bash', 'tools/dist_trainval.sh', cfg_path, '2', '--work-dir', str(work)], env)

    r0 = torch.load(work / 'probe_first_rank0.pt')
    r1 = torch.load(work / 'probe_first_rank1.pt')
    assert r0['world'] == r1['world'] == 2
    # the distributed sampler gives each rank its own half of the training videos
    train_ids = {f'synthetic_{i:04d}' for i in range(NUM_TRAIN)}
    assert len(r0['trained']) == len(r1['trained']) == NUM_TRAIN // 2
    assert not set(r0['trained']) & set(r1['trained'])
    assert set(r0['trained']) | set(r1['trained']) == train_ids
    # each rank wrote fresh chunks of its own videos only, one per 5-chunk window (keep 0.2)
    for rec in (r0, r1):
        assert {vid for vid, _, _ in rec['written']} == set(rec['trained'])
        assert sorted(step for _, _, step in rec['written']) == [0, 1]

    # both processes' writes landed in the shared working bank, nothing else changed there
    bank = MemoryBank.open(work / 'membank', 'r')
    steps_after_first = _all_steps(bank)
    written = {k: s for k, s in steps_after_first.items() if s >= 0}
    assert written == _latest_writes(r0['written'], r1['written'])
    assert {vid for vid, _ in written} == train_ids
    # the template stays as extracted: never written
    template = MemoryBank.open(synthetic_bank / 'bank', 'r')
    assert set(_all_steps(template).values()) == {-1}

    # DDP kept the ranks' weights equal although they trained on different videos, and
    # rank 0 saved exactly those weights
    assert any(not torch.equal(r0['initial'][k], r0['state'][k]) for k in r0['state'])
    _assert_same_state(r0['state'], r1['state'])
    ckpt = load_checkpoint(str(work / 'epoch_001.pth.tar'))
    _assert_same_state(ckpt['state_dict'], r0['state'])
    assert ckpt['meta']['world_size'] == 2
    assert ckpt['meta']['extra_state']['bank_step'] == 1  # last iteration of rank 0

    # resume in one process for a second epoch: the working bank is reused, not recopied
    _run([sys.executable, 'tools/trainval.py', cfg_path, '--work-dir', str(work), '--resume',
          '--cfg-options', 'train_cfg.early_stop_epochs=2'], env)
    res = torch.load(work / 'probe_resume_rank0.pt')
    assert sorted(res['trained']) == sorted(train_ids)
    assert min(step for _, _, step in res['written']) == NUM_TRAIN  # epoch 2 starts at iter 4
    expected = _latest_writes(r0['written'], r1['written'], res['written'])
    kept = {k: s for k, s in expected.items() if s < NUM_TRAIN}
    assert kept, 'every first-epoch chunk was rewritten: the resume check would be vacuous'
    bank = MemoryBank.open(work / 'membank', 'r')
    final = _all_steps(bank)
    assert {k: s for k, s in final.items() if s >= 0} == expected
    # written chunks hold new features, the others still the template's
    for (vid, chunk), step in final.items():
        same = np.array_equal(bank.read_window(vid, chunk, 1),
                              template.read_window(vid, chunk, 1))
        assert same == (step < 0), (vid, chunk, step)
    ckpt2 = load_checkpoint(str(work / 'epoch_002.pth.tar'))
    assert ckpt2['meta']['extra_state']['bank_step'] == 2 * NUM_TRAIN - 1
    assert set(_all_steps(template).values()) == {-1}
