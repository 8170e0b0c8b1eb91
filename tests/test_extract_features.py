"""extract_features end to end on tiny synthetic videos: bank contents, resume, failures,
export, torchrun sharding."""
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from mmengine.config import Config

from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.data.video_readers import open_video
from vedatad.engine.extract import extract_features
from vedatad.membank import SETTING_KEYS, BankError, MemoryBank
from vedatad.utils.config_keys import ConfigKeyError
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
        backbone=dict(BACKBONE, pretrained=str(weights) if weights else None),
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


def test_bank_records_its_settings(videos, tmp_path, weights):
    extract_features(make_cfg(videos, tmp_path, weights), progress=False)
    settings = MemoryBank.open(tmp_path / 'bank').settings
    assert set(settings) == set(SETTING_KEYS)
    assert settings['weights'] == 'weights.pth' and settings['init_seed'] is None
    assert settings['weights_sha256'] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert settings['backbone'].startswith('VideoSwin(arch=None, depths=[1, 1], embed_dim=8')
    assert (settings['fps'], settings['crop_size'], settings['resize']) == (15, 32, None)
    assert settings['mean'] == [123.675, 116.28, 103.53] and settings['chunk_size'] == 32
    assert (settings['frames_per_row'], settings['feat_dim']) == (2, 16)


def test_resume_with_other_settings_is_refused_listing_every_difference(videos, tmp_path,
                                                                         weights):
    extract_features(make_cfg(videos, tmp_path, weights), progress=False)
    bank_dir = tmp_path / 'bank'
    before = sorted((p, p.stat().st_mtime_ns) for p in bank_dir.rglob('*') if p.is_file()
                    and p.name != '.lock')
    cfg = make_cfg(videos, tmp_path, weights)
    cfg.data.crop_size = 48
    cfg.data.mean = (0.0, 0.0, 0.0)
    cfg.data.fps = 10
    other = tmp_path / 'other.pth'
    other.write_bytes(weights.read_bytes())  # same bytes, other name
    cfg.backbone.pretrained = str(other)
    with pytest.raises(BankError) as err:
        extract_features(cfg, progress=False)
    msg = str(err.value)
    for key in ('crop_size: bank 32 vs config 48', 'mean: bank [123.675, 116.28, 103.53] vs '
                'config [0.0, 0.0, 0.0]', 'fps: bank 15 vs config 10',
                "weights: bank 'weights.pth' vs config 'other.pth'"):
        assert key in msg, msg
    assert 'weights_sha256' not in msg and 'backbone:' not in msg  # same bytes, same net
    assert 'another bank path' in msg
    # same file name, other contents: the hash tells
    torch.manual_seed(1)
    torch.save(build_backbone(BACKBONE).state_dict(), weights)
    with pytest.raises(BankError, match='weights_sha256: bank'):
        extract_features(make_cfg(videos, tmp_path, weights), progress=False)
    # another network
    cfg = make_cfg(videos, tmp_path, None)
    cfg.backbone.embed_dim = 4
    with pytest.raises(BankError) as err:
        extract_features(cfg, progress=False)
    msg = str(err.value)
    assert 'backbone: bank' in msg and 'embed_dim=4' in msg and 'feat_dim: bank 16 vs config 8' \
        in msg and "weights: bank 'weights.pth' vs config None" in msg
    after = sorted((p, p.stat().st_mtime_ns) for p in bank_dir.rglob('*') if p.is_file()
                   and p.name != '.lock')
    assert after == before  # nothing was written


def test_random_weights_are_seeded_and_the_seed_recorded(videos, tmp_path):
    cfg = make_cfg(videos, tmp_path, None)
    cfg.backbone.pretrained = None
    extract_features(cfg, progress=False)
    again = make_cfg(videos, tmp_path, None)
    again.backbone.pretrained = None
    again.bank.path = str(tmp_path / 'bank2')
    extract_features(again, progress=False)
    a, b = MemoryBank.open(tmp_path / 'bank'), MemoryBank.open(tmp_path / 'bank2')
    assert a.settings['init_seed'] == 1234567891 and a.settings['weights'] is None
    vid = video_ids(videos)[0]
    np.testing.assert_array_equal(a.read_chunks(vid, [0, 1]), b.read_chunks(vid, [0, 1]))
    cfg.extract.init_seed = 5
    with pytest.raises(BankError, match='init_seed: bank 1234567891 vs config 5'):
        extract_features(cfg, progress=False)


def test_bank_without_settings_is_compared_on_its_creation_config(videos, tmp_path, weights):
    cfg = make_cfg(videos, tmp_path, weights)
    MemoryBank.create(tmp_path / 'bank', feat_dim=16, backbone='old', config=cfg.to_dict())
    cfg.data.crop_size = 40
    with pytest.raises(BankError, match='crop_size: bank 32 vs config 40'):
        extract_features(cfg, progress=False)
    cfg.data.crop_size = 32
    assert not extract_features(cfg, progress=False).failed  # the rest matches


@pytest.mark.parametrize('fps', [0, -15, float('nan'), float('inf')])
def test_unusable_fps_is_refused_before_any_work(videos, tmp_path, weights, fps):
    cfg = make_cfg(videos, tmp_path, weights)
    cfg.data.fps = fps
    with pytest.raises(ConfigKeyError, match='data.fps must be a positive number'):
        extract_features(cfg, progress=False)
    assert not (tmp_path / 'bank').exists()


def test_video_shorter_than_its_annotation_fails_by_name(videos, tmp_path, weights):
    ann = json.loads((videos / 'annotations.json').read_text())
    short = video_ids(videos)[0]
    ann['database'][short]['duration'] = 30.0  # the file holds 3 s
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    cfg = make_cfg(videos, tmp_path, weights)
    cfg.data.ann_file = str(tmp_path / 'ann.json')
    summary = extract_features(cfg, progress=False)
    assert list(summary.failed) == [short]
    assert 'promises 450' in summary.failed[short] and 'min_frames_fraction' in \
        summary.failed[short]
    bank = MemoryBank.open(tmp_path / 'bank')
    assert not bank.is_complete(short)
    cfg.extract.min_frames_fraction = 0.0  # accepted when asked for
    assert extract_features(cfg, progress=False).done == [short]


@pytest.mark.parametrize('key, value, match', [
    ('extract.chunks_per_itme', 2, r"extract.chunks_per_itme'; did you mean "
                                   r"'extract.chunks_per_item'"),
    ('data.fpz', 15, r"data.fpz'; did you mean 'data.fps'"),
    ('bank.pth', 'x', r"bank.pth'; did you mean 'bank.path'"),
    ('extrct', {}, r"'extraction config.extrct'; did you mean 'extraction config.extract'"),
])
def test_config_sections_are_strict(videos, tmp_path, weights, key, value, match):
    cfg = make_cfg(videos, tmp_path, weights)
    cfg.merge_from_dict({key: value})
    with pytest.raises(ConfigKeyError, match=match):
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


def _spawn(target, *args):
    import multiprocessing as mp
    proc = mp.get_context('spawn').Process(target=target, args=args)
    proc.start()
    return proc


def test_a_second_job_on_the_same_bank_is_refused_and_a_dead_ones_lock_taken_over(
        videos, tmp_path, weights):
    import multiprocessing as mp
    sys.path.insert(0, str(Path(__file__).parent))
    import membank_workers as workers
    ctx = mp.get_context('spawn')
    held, release = ctx.Event(), ctx.Event()
    holder = _spawn(workers.hold_lock, str(tmp_path / 'bank'), held, release)
    try:
        assert held.wait(60)
        with pytest.raises(BankError) as err:
            extract_features(make_cfg(videos, tmp_path, weights), progress=False)
        msg = str(err.value)
        assert 'another job is writing this bank' in msg and f'pid {holder.pid}' in msg
        assert 'membank_workers.hold_lock' in msg
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: the lock is stale now
        holder.join(30)
    with pytest.warns(UserWarning, match=f'taking over the lock.*pid {holder.pid}'):
        summary = extract_features(make_cfg(videos, tmp_path, weights), progress=False)
    assert sorted(summary.done) == video_ids(videos)
    # training does not need the lock: copying a template while it is held works
    held2, release2 = ctx.Event(), ctx.Event()
    holder = _spawn(workers.hold_lock, str(tmp_path / 'bank'), held2, release2)
    try:
        assert held2.wait(60)
        with pytest.warns(UserWarning, match='may still be writing it'):
            work = MemoryBank.copy(tmp_path / 'bank', tmp_path / 'work')
        assert work.video_ids() == video_ids(videos) and not (tmp_path / 'work/.lock').exists()
    finally:
        release2.set()
        holder.join(30)


def test_ctrl_c_stops_with_one_line_and_the_same_command_resumes(tmp_path, repo_root):
    root = tmp_path / 'long'
    make_synthetic_videos(root, num_videos=6, seconds=6, size=64, num_classes=2, seed=2)
    cfg = Config(dict(
        data=dict(root=str(root / 'videos'), ann_file=str(root / 'annotations.json'), fps=15,
                  crop_size=48),
        backbone=dict(BACKBONE, pretrained=None), bank=dict(path=str(tmp_path / 'bank')),
        extract=dict(chunks_per_item=1, num_workers=1), cpu_threads=1))
    cmd = [sys.executable, str(repo_root / 'tools/data/extract_features.py'), '--config',
           str(write_cfg(tmp_path, cfg)), '--no-progress']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 240
    bank_dir = tmp_path / 'bank'
    while time.monotonic() < deadline and proc.poll() is None:
        if (bank_dir / 'zarr.json').is_file() and any(
                MemoryBank.open(bank_dir).is_complete(v) for v in
                MemoryBank.open(bank_dir).video_ids()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'finished before it could be interrupted: ' + proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert 'Traceback' not in err and 'Traceback' not in out, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('interrupted: '), err
    assert 'of 6 videos are complete in' in lines[0] and 'run the same command again' in lines[0]
    complete = int(lines[0].split()[1])
    assert 1 <= complete < 6
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f'{6 - complete} videos extracted, {complete} already complete' in rerun.stdout


@pytest.mark.parametrize('fps, frames, durations, match', [
    (0.0, 50, {}, 'frame rate 0.0 is not a positive number'),
    (float('nan'), 50, {}, 'frame rate nan is not a positive number'),
    (-2.0, 50, {}, 'frame rate -2.0'),
    (15.0, 1, {}, 'decodes to 1 frames, fewer than extract.min_frames=2'),
    (15.0, 40, {'v': 10.0}, 'promises 150'),
])
def test_clip_source_refuses_readers_that_cannot_make_a_complete_video(fps, frames,
                                                                         durations, match):
    from types import SimpleNamespace

    from vedatad.data.clip_source import ClipSegments, VideoCheckError
    source = ClipSegments([], '.', 32, min_frames=2, durations=durations,
                          min_frames_fraction=0.8)
    reader = SimpleNamespace(fps=fps, num_frames=frames)
    with pytest.raises(VideoCheckError, match=match):
        source.check_reader(reader, 'v', 'videos/v.mp4')
    source.check_reader(SimpleNamespace(fps=15.0, num_frames=130), 'v', 'videos/v.mp4')


@pytest.mark.parametrize('path', sorted(Path(__file__).resolve().parents[1].joinpath(
    'configs/extract').glob('*.py')), ids=lambda p: p.stem)
def test_shipped_extraction_configs_pass_the_strict_checks(path):
    from vedatad.engine.extract import read_config
    data, backbone, bank, ext = read_config(Config.fromfile(str(path)))
    assert data['crop_size'] and bank['path'] and backbone['type'] == 'VideoSwin'


def test_exported_file_is_streamed_and_a_full_disk_keeps_the_previous_file(tmp_path,
                                                                           monkeypatch):
    """Segments are written into a temporary file at their rows (any order), renamed at the
    end; a failed write names the file, says the disk is full, and leaves the earlier
    export of that video as it was."""
    import errno
    import vedatad.engine.extract as extract
    writer = extract.FeatureFileWriter(tmp_path, feat_dim=3)
    rows = np.arange(15, dtype=np.float32).reshape(5, 3)
    writer.write('v', 5, 4, np.concatenate([rows[4:], rows[:1] * 0 - 1]))  # padded past the end
    writer.write('v', 5, 0, rows[:4])
    assert not (tmp_path / 'v.npy').exists()
    writer.finish('v')
    assert np.array_equal(np.load(tmp_path / 'v.npy'), rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['v.npy']

    def full(fd, data, offset=None):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(extract, 'write_all', full)
    with pytest.raises(OSError, match=r'v\.npy: not written \(No space left on device\) '
                                      r'\(disk full'):
        writer.write('v', 5, 0, rows * 2)
    writer.discard('v')  # what the extractor does with a failed video
    assert sorted(p.name for p in tmp_path.iterdir()) == ['v.npy']
    assert np.array_equal(np.load(tmp_path / 'v.npy'), rows)
