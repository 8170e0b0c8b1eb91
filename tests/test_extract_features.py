"""extract_features end to end on tiny synthetic videos: bank contents, resume, failures,
export, torchrun sharding."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr
from mmengine.config import Config

from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.data.video_readers import open_video
from vedatad.membank import MemoryBank
from vedatad.membank.extract import extract_features
from vedatad.models import build_backbone

torch.set_num_threads(1)

BACKBONE = dict(type='VideoSwin', arch=None, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                window_size=(4, 4, 4), drop_path_rate=0.0)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    make_synthetic_videos(root, num_videos=3, seconds=3, size=64, num_classes=2, seed=1)
    return root


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    model = build_backbone(BACKBONE)
    path = tmp_path / 'weights.pth'
    torch.save(model.state_dict(), path)
    return path


def make_cfg(videos, tmp_path, weights, **extract):
    cfg = dict(
        data=dict(root=str(videos / 'videos'), ann_file=str(videos / 'annotations.json'),
                  subset=None, fps=15, resize=None, crop_size=32),
        backbone=dict(BACKBONE, pretrained=str(weights)),
        bank=dict(path=str(tmp_path / 'bank')),
        extract=dict(dict(chunk_size=32, chunks_per_item=1, num_workers=0), **extract))
    return Config(cfg)


def video_ids(videos):
    return sorted(json.loads((videos / 'annotations.json').read_text())['database'])


def reference_features(videos, vid, weights):
    """The same computation done by hand: decode, crop, normalise, pad, chunked forward."""
    reader = open_video(videos / 'videos' / f'{vid}.mp4', sample_fps=15)
    frames = reader.read(np.arange(reader.num_frames)).astype(np.float32)
    y, x = (frames.shape[1] - 32) // 2, (frames.shape[2] - 32) // 2
    frames = frames[:, y:y + 32, x:x + 32]
    frames = (frames - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
    clip = torch.from_numpy(frames.astype(np.float32)).permute(3, 0, 1, 2)
    clip = torch.cat([clip, clip.new_zeros((3, -clip.shape[1] % 32, 32, 32))], dim=1)
    model = build_backbone(dict(BACKBONE, pretrained=str(weights))).eval()
    with torch.no_grad():
        feats = model.forward_chunks(clip[None], 32)[0].t().numpy()
    return reader.num_frames, feats


def test_fills_bank_with_the_backbone_features(videos, tmp_path, weights):
    cfg = make_cfg(videos, tmp_path, weights, num_workers=1, chunks_per_item=1)
    summary = extract_features(cfg, export_npy=tmp_path / 'npy', progress=False)
    ids = video_ids(videos)
    assert not summary.failed, summary.failed
    assert sorted(summary.done) == ids and summary.frames > 0
    bank = MemoryBank.open(tmp_path / 'bank')
    assert bank.video_ids() == ids and all(bank.is_complete(v) for v in ids)
    assert bank.feat_dim == 16 and bank.attrs['config']['data']['crop_size'] == 32
    num_frames, ref = reference_features(videos, ids[0], weights)
    assert bank.num_frames(ids[0]) == num_frames
    rows = (num_frames + 1) // 2
    got = bank.read_window(ids[0], 0, bank.num_chunks(ids[0]))
    np.testing.assert_allclose(got[:rows], ref[:rows], atol=2e-2, rtol=1e-2)
    exported = np.load(tmp_path / 'npy' / f'{ids[0]}.npy')
    assert exported.dtype == np.float32 and exported.shape == (rows, 16)
    np.testing.assert_allclose(exported, ref[:rows], atol=1e-4, rtol=1e-4)
    info = json.loads((tmp_path / 'npy' / 'features_info.json').read_text())
    assert info['feat_stride'] == 2 and info['feat_dim'] == 16


def test_resume_skips_complete_videos(videos, tmp_path, weights):
    cfg = make_cfg(videos, tmp_path, weights)
    extract_features(cfg, progress=False)
    ids = video_ids(videos)
    again = extract_features(cfg, progress=False)
    assert sorted(again.skipped) == ids and not again.done and again.frames == 0
    # an interrupted video (written, not marked complete) is redone; the others are not
    arr = zarr.open_array(tmp_path / 'bank' / 'feats' / ids[1], mode='r+')
    arr.update_attributes(dict(complete=False))
    before = (tmp_path / 'bank' / 'feats' / ids[0] / 'c' / '0' / '0').stat().st_mtime_ns
    third = extract_features(cfg, progress=False)
    assert third.done == [ids[1]] and sorted(third.skipped) == [ids[0], ids[2]]
    assert (tmp_path / 'bank' / 'feats' / ids[0] / 'c' / '0' / '0').stat().st_mtime_ns == before
    assert MemoryBank.open(tmp_path / 'bank').is_complete(ids[1])


def test_bank_of_another_backbone_is_refused(videos, tmp_path, weights):
    extract_features(make_cfg(videos, tmp_path, weights), progress=False)
    cfg = make_cfg(videos, tmp_path, weights)
    cfg.backbone.embed_dim = 4
    cfg.backbone.pretrained = None
    with pytest.raises(Exception, match='other settings'):
        extract_features(cfg, progress=False)


def write_cfg(tmp_path, cfg):
    path = tmp_path / 'cfg.py'
    cfg.dump(str(path))
    return path


def test_cli_reports_failed_videos_by_name(videos, tmp_path, weights, repo_root, capsys):
    ann = json.loads((videos / 'annotations.json').read_text())
    ann['database']['broken_video'] = dict(subset='validation', duration=3.0, annotations=[])
    ann['database']['missing_video'] = dict(subset='validation', duration=3.0, annotations=[])
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    vids = tmp_path / 'videos'
    vids.mkdir()
    for vid in video_ids(videos):
        (vids / f'{vid}.mp4').symlink_to(videos / 'videos' / f'{vid}.mp4')
    (vids / 'broken_video.mp4').write_bytes(b'\x00' * 1000)
    cfg = make_cfg(videos, tmp_path, weights)
    cfg.data.ann_file, cfg.data.root = str(tmp_path / 'ann.json'), str(vids)
    spec = importlib.util.spec_from_file_location(
        'extract_features_tool', repo_root / 'tools/data/extract_features.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    code = tool.main(['--config', str(write_cfg(tmp_path, cfg)), '--no-progress',
                      '--cfg-options', f'bank.path={tmp_path / "cli_bank"}'])
    out = capsys.readouterr().out
    assert code == 1
    assert '2 videos FAILED' in out
    assert 'broken_video' in out and 'missing_video' in out
    bank = MemoryBank.open(tmp_path / 'cli_bank')
    assert all(bank.is_complete(v) for v in video_ids(videos))
    assert not bank.is_complete('broken_video')


def test_torchrun_two_ranks_shard_the_videos(videos, tmp_path, weights, repo_root):
    cfg = make_cfg(videos, tmp_path, weights)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
                          '2', '--master_port', '29531',
                          str(repo_root / 'tools/data/extract_features.py'),
                          '--config', str(write_cfg(tmp_path, cfg)), '--no-progress'],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    # 3 videos: rank 0 takes videos 0 and 2, rank 1 video 1
    assert 'rank 0: 2 videos extracted' in run.stdout
    assert 'rank 1: 1 videos extracted' in run.stdout
    bank = MemoryBank.open(tmp_path / 'bank')
    assert all(bank.is_complete(v) for v in video_ids(videos))
