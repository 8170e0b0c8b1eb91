"""TALLFormer trained end to end by two CPU processes (gloo) through tools/dist_trainval.sh on
synthetic videos, as two torchrun "nodes" (--nnodes 2, master on 127.0.0.1) sharing one
working bank on the filesystem: the template is copied once (by global rank 0, also when
the nodes start at different times), each rank writes only its own videos' chunks into the
shared working bank, the ranks' weights stay equal, the template is left alone, and a run
resumed on one node (torchrun --standalone, two processes) keeps using the working bank."""
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from vedatad.engine.checkpoint import load_checkpoint
from vedatad.engine.extract import backbone_name
from vedatad.membank import MemoryBank

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, 'configs', 'tallformer', 'demo_tiny.py')
NUM_TRAIN = 4   # of 6 synthetic videos (2/3 training); each has 4 chunks of 32 frames

# Imported by trainval.py through the config's custom_imports: TALLFormer that records, per
# process, the videos it trained on, the chunks it wrote and its weights after each epoch;
# and every copy of a template bank, as a marker file next to the copy.
PROBE_MODULE = '''
import os
import torch
import torch.distributed as dist
from vedatad.membank import MemoryBank
from vedatad.models.detectors.tallformer import TALLFormer
from vedatad.registry import MODELS

_copy = MemoryBank.copy.__func__


def _recording_copy(cls, src, dst, **kwargs):
    rank = dist.get_rank() if dist.is_initialized() else 0
    marker = os.path.join(os.path.dirname(str(dst)), f'copied_by_rank{rank}_pid{os.getpid()}')
    open(marker, 'w').close()
    return _copy(cls, src, dst, **kwargs)


MemoryBank.copy = classmethod(_recording_copy)


@MODELS.register_module()
class RankProbeTALLFormer(TALLFormer):
    def attach_bank_writer(self, writer):  # once per process, before the first step
        super().attach_bank_writer(writer)
        rank = dist.get_rank() if dist.is_initialized() else 0
        work_dir = os.path.dirname(str(writer.bank.path))
        tag = os.environ['PROBE_TAG']
        self.probe_path = os.path.join(work_dir, f'probe_{tag}_rank{rank}.pt')
        self.initial = {k: v.clone() for k, v in self.state_dict().items()}
        self.trained, self.written = [], []

    def forward_loss(self, batch):
        self.trained += [m['video_id'] for m in batch['metas']]
        return super().forward_loss(batch)

    def write_back(self, batch, fresh):
        super().write_back(batch, fresh)
        bank = self.bank_writer.bank
        for meta, off, picks in zip(batch['metas'], batch['frame_offsets'].tolist(),
                                    batch['fresh_chunks']):
            vid = meta['video_id']
            self.written += [(vid, int(c), self.train_iter) for c in off // 32 + picks
                             if c < bank.num_chunks(vid)]

    def epoch_stats(self):
        torch.save({'initial': self.initial, 'state': self.state_dict(),
                    'trained': self.trained, 'written': self.written,
                    'world': dist.get_world_size() if dist.is_initialized() else 1},
                   self.probe_path)
        return super().epoch_stats()
'''

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available() and shutil.which('bash')),
    reason='needs torch.distributed with gloo and bash for torchrun')


def _check(proc, out, cmd):
    assert proc.returncode == 0, f'{cmd}\n{out[0][-2000:]}\n{out[1][-4000:]}'


def _run(cmd, env, timeout=300):
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    _check(proc, (proc.stdout, proc.stderr), cmd)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _two_nodes(cmd, env, delays=(0.0, 3.0), timeout=300):
    """Launch ``cmd`` as node 0 and node 1 of a two-node torchrun job on this machine, one
    process each, node k started ``delays[k]`` seconds after the first."""
    port = _free_port()
    procs = []
    for node in sorted(range(2), key=lambda k: delays[k]):
        time.sleep(max(0.0, delays[node] - (delays[procs[-1][0]] if procs else 0.0)))
        if node == 0:  # torchrun's own flags
            node_env = dict(env, TORCHRUN_ARGS=f'--nnodes 2 --node_rank 0 --master_addr '
                                               f'127.0.0.1 --master_port {port}')
        else:  # the launcher's environment variables
            node_env = dict(env, NNODES='2', NODE_RANK='1', MASTER_ADDR='127.0.0.1',
                            MASTER_PORT=str(port))
            node_env.pop('TORCHRUN_ARGS', None)
        procs.append((node, subprocess.Popen(cmd, cwd=REPO, env=node_env, text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    outs = {}
    for node, proc in procs:
        try:
            outs[node] = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for _, p in procs:
                p.kill()
            raise
    failed = [node for node, proc in procs if proc.returncode != 0]
    if failed:  # every node's output: the first failure is often on the other node
        pytest.fail('\n'.join(f'node {n} exit {p.returncode}: {cmd}\n{outs[n][0][-2000:]}\n'
                              f'{outs[n][1][-4000:]}' for n, p in procs))


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


@pytest.fixture(scope='module')
def synthetic_bank(tmp_path_factory):
    """Six 8 s synthetic videos at 64 px and a template bank of random (non-zero) features
    for them, all steps -1 (the features' values do not matter here)."""
    from vedatad.data.synthetic_videos import make_synthetic_videos
    from vedatad.data.video_readers import open_video
    data = tmp_path_factory.mktemp('dist') / 'data'
    make_synthetic_videos(data, num_videos=6, seconds=8, size=64, num_classes=3, seed=0)
    # named after the config's backbone: the preflight check refuses a bank of another one
    bank = MemoryBank.create(data / 'bank', feat_dim=128,
                             backbone=backbone_name(Config.fromfile(CONFIG).model.backbone))
    rng = np.random.default_rng(0)
    for path in sorted((data / 'videos').glob('*.mp4')):
        bank.add_video(path.stem, open_video(path).num_frames)
        n = bank.num_chunks(path.stem)
        bank.write_chunks(path.stem, list(range(n)), rng.standard_normal((n, 16, 128)), step=-1)
        bank.mark_complete(path.stem)
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


def _env(tmp_path, tag):
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PROBE_TAG=tag,
                PYTHONPATH=os.pathsep.join([REPO, str(tmp_path)]))


def _copy_markers(work):
    return sorted(p.name for p in work.iterdir() if p.name.startswith('copied_by_'))


def _check_first_epoch(work, template_path):
    """Two ranks, one epoch: disjoint videos, own chunks written, equal weights."""
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
    written = {k: s for k, s in _all_steps(bank).items() if s >= 0}
    assert written == _latest_writes(r0['written'], r1['written'])
    assert {vid for vid, _ in written} == train_ids
    template = MemoryBank.open(template_path, 'r')
    assert set(_all_steps(template).values()) == {-1}
    # DDP kept the ranks' weights equal although they trained on different videos, and
    # rank 0 saved exactly those weights
    assert any(not torch.equal(r0['initial'][k], r0['state'][k]) for k in r0['state'])
    _assert_same_state(r0['state'], r1['state'])
    ckpt = load_checkpoint(str(work / 'epoch_001.pth.tar'))
    _assert_same_state(ckpt['state_dict'], r0['state'])
    assert ckpt['meta']['world_size'] == 2
    assert ckpt['meta']['extra_state']['bank_step'] == 1  # last iteration of rank 0
    return r0, r1, train_ids


def _check_resumed(work, template_path, firsts, resumed, first_iter):
    """After the resume: the working bank holds exactly the last write of every chunk."""
    assert min(step for rec in resumed for _, _, step in rec['written']) == first_iter
    expected = _latest_writes(*[r['written'] for r in firsts], *[r['written'] for r in resumed])
    kept = {k: s for k, s in expected.items() if s < first_iter}
    assert kept, 'every first-epoch chunk was rewritten: the resume check would be vacuous'
    bank = MemoryBank.open(work / 'membank', 'r')
    template = MemoryBank.open(template_path, 'r')
    final = _all_steps(bank)
    assert {k: s for k, s in final.items() if s >= 0} == expected
    # written chunks hold new features, the others still the template's
    for (vid, chunk), step in final.items():
        same = np.array_equal(bank.read_chunks(vid, [chunk]), template.read_chunks(vid, [chunk]))
        assert same == (step < 0), (vid, chunk, step)
    assert set(_all_steps(template).values()) == {-1}


@needs_gloo
def test_two_nodes_share_one_bank_on_the_filesystem_then_resume(synthetic_bank, tmp_path):
    cfg_path = _write_config(tmp_path, synthetic_bank)
    work = tmp_path / 'work'
    cmd = ['bash', 'tools/dist_trainval.sh', cfg_path, '1', '--work-dir', str(work)]
    # node 1 starts first and waits; the master node (global rank 0, which copies the
    # template) joins 3 s later
    _two_nodes(cmd, _env(tmp_path, 'first'), delays=(3.0, 0.0))
    markers = _copy_markers(work)
    assert len(markers) == 1 and markers[0].startswith('copied_by_rank0_'), markers
    r0, r1, train_ids = _check_first_epoch(work, synthetic_bank / 'bank')

    # resume for a second epoch as one node with two processes (torchrun --standalone):
    # the working bank is reused, not copied again
    _run(['bash', 'tools/dist_trainval.sh', cfg_path, '2', '--work-dir', str(work), '--resume',
          '--cfg-options', 'train_cfg.early_stop_epochs=2'], _env(tmp_path, 'resume'))
    assert _copy_markers(work) == markers
    res = [torch.load(work / f'probe_resume_rank{r}.pt') for r in (0, 1)]
    assert not set(res[0]['trained']) & set(res[1]['trained'])
    assert set(res[0]['trained']) | set(res[1]['trained']) == train_ids
    _assert_same_state(res[0]['state'], res[1]['state'])
    _check_resumed(work, synthetic_bank / 'bank', (r0, r1), res, NUM_TRAIN // 2)
    ckpt2 = load_checkpoint(str(work / 'epoch_002.pth.tar'))
    _assert_same_state(ckpt2['state_dict'], res[0]['state'])
    assert ckpt2['meta']['extra_state']['bank_step'] == NUM_TRAIN - 1
