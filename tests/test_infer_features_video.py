"""infer.py with a feature-based checkpoint on video files: videos -> extract_features
--export-npy -> a short ActionFormer training on the exported features -> infer.py on the
video files gives the detections of infer.py on their exported .npy (the checkpoint records
how the features were extracted). Run from another folder, with spaces in every path; the
tiny backbone has seeded random weights saved to a file (its path and hash are recorded)."""
import json
import re
import shutil

import pytest
import torch
from mmengine.config import Config

from test_own_data import SMALL_ACTIONFORMER, run_here
from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.engine.extract import extract_features
from vedatad.models import build_backbone
from vedatad.utils.safe_load import torch_load_safe

BACKBONE = dict(type='VideoSwin', arch=None, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                window_size=(4, 4, 4), drop_path_rate=0.0)
CONFIG = 'configs/own_data/features.py'


def extraction_cfg(root, weights, export_name='features'):
    return dict(
        data=dict(root=str(root / 'videos'), ann_file=str(root / 'annotations.json'),
                  subset=None, fps=15, resize=None, crop_size=32),
        backbone=dict(BACKBONE, pretrained=str(weights)),
        bank=dict(path=str(root / f'bank {export_name}')),
        extract=dict(chunk_size=32, chunks_per_item=1, num_workers=0, device='cpu'))


def save_weights(path, seed):
    torch.manual_seed(seed)
    torch.save(build_backbone(BACKBONE).state_dict(), path)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, repo_root):
    """(data root, checkpoint): features of 4 synthetic videos exported by the extraction job,
    one epoch of the own-data feature config on them."""
    root = tmp_path_factory.mktemp('infer') / 'my data'
    make_synthetic_videos(root, num_videos=4, seconds=3, size=64, num_classes=2, seed=5,
                          train_fraction=0.5)
    weights = root / 'tiny weights.pth'
    save_weights(weights, seed=0)
    summary = extract_features(Config(extraction_cfg(root, weights)),
                               export_npy=root / 'features', progress=False)
    assert not summary.failed and len(summary.done) == 4
    work = root.parent / 'work dir'
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('OWN_DATA', str(root))
        patch.chdir(repo_root)
        status, printed = run_here('trainval.py', [
            CONFIG, '--work-dir', work, '--cfg-options', *SMALL_ACTIONFORMER,
            'train_cfg.epochs=1', 'scheduler.warmup_epochs=0', 'scheduler.epochs=1'],
            _Capture())
    assert status == 0, printed
    return root, work / 'latest.pth.tar'


class _Capture:
    """capsys for a module fixture: run_here only reads what was printed."""

    def readouterr(self):
        return type('Out', (), dict(out='', err=''))()


def infer_here(args, capsys, where, *options):
    """tools/infer.py main() with ``where`` as the working directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        return run_here('infer.py', [*args, '--no-progress', '--cfg-options', 'device=cpu',
                                     *options], capsys)


def detections(path):
    return json.loads(path.read_text())['results']


def assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x['label'] == y['label']
        assert x['score'] == pytest.approx(y['score'], abs=1e-5)
        assert x['segment'] == pytest.approx(y['segment'], abs=1e-4)


def elsewhere(tmp_path):
    folder = tmp_path / 'another folder'
    folder.mkdir()
    return folder


def test_checkpoint_records_how_its_features_were_extracted(trained):
    root, ckpt = trained
    info = json.loads((root / 'features' / 'features_info.json').read_text())
    record = torch_load_safe(ckpt)['meta']['data']['extraction']
    assert record == info['extraction']
    assert record['source'] == 'video files'
    assert record['backbone']['pretrained'] == str(root / 'tiny weights.pth')  # absolute
    assert record['settings']['weights_sha256'] and record['data']['crop_size'] == 32
    # the export streamed each video into a temporary file renamed at its end: none is left
    assert sorted(p.name for p in (root / 'features').iterdir()) == [
        'features_info.json', *[f'synthetic_{i:04d}.npy' for i in range(4)]]


def test_guide_names_the_extraction_config_it_documents(repo_root, monkeypatch):
    from vedatad.engine.config_loader import load_config
    from vedatad.engine.extract import read_config
    readme = (repo_root / 'README.md').read_text()
    assert 'extract_features.py --config configs/own_data/features_extract.py' in readme
    assert 'feature_extractor=configs/own_data/features_extract.py' in readme
    monkeypatch.setenv('OWN_DATA', '/my data')
    data, _, bank, _ = read_config(load_config(repo_root / 'configs/own_data/features_extract.py'))
    assert data['root'] == '/my data/videos' and data['subset'] is None  # video files, all
    assert bank['path'].startswith('/my data/membank/')


def test_videos_give_the_detections_of_their_exported_npy(trained, tmp_path, capsys,
                                                          repo_root):
    root, ckpt = trained
    ids = ['synthetic_0002', 'synthetic_0003']
    videos = [root / 'videos' / f'{v}.mp4' for v in ids]
    here = elsewhere(tmp_path)
    status, printed = infer_here([repo_root / CONFIG, ckpt, *videos, '--out',
                                  tmp_path / 'from videos.json'], capsys, here)
    assert status == 0, printed
    status, printed = infer_here([repo_root / CONFIG, ckpt,
                                  *[root / 'features' / f'{v}.npy' for v in ids], '--out',
                                  tmp_path / 'from npy.json'], capsys, here)
    assert status == 0, printed
    from_videos, from_npy = (detections(tmp_path / 'from videos.json'),
                             detections(tmp_path / 'from npy.json'))
    assert sorted(from_videos) == sorted(from_npy) == ids
    for vid in ids:
        assert_same(from_videos[vid], from_npy[vid])

    # mixed: one .npy and one video in a single run, the same detections again; a broken
    # video is refused by name and the others are written
    broken = tmp_path / 'my clips' / 'broken.mp4'
    broken.parent.mkdir()
    broken.write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(200))
    status, printed = infer_here([repo_root / CONFIG, ckpt, root / 'features' / f'{ids[0]}.npy',
                                  videos[1], broken, '--out', tmp_path / 'mixed.json'], capsys,
                                 here)
    assert status == 1 and re.search(r'refused .*my clips/broken\.mp4: ', printed), printed
    mixed = detections(tmp_path / 'mixed.json')
    assert sorted(mixed) == ids
    for vid in ids:
        assert_same(mixed[vid], from_npy[vid])


def test_external_features_checkpoint_refuses_videos_in_one_line(trained, tmp_path, capsys,
                                                                 repo_root):
    root, ckpt = trained
    checkpoint = torch_load_safe(ckpt)
    del checkpoint['meta']['data']['extraction']  # as if trained on I3D features
    external = tmp_path / 'external features.pth.tar'
    torch.save(checkpoint, external)
    video, npy = root / 'videos' / 'synthetic_0003.mp4', root / 'features' / 'synthetic_0002.npy'
    status, printed = infer_here([repo_root / CONFIG, external, video, npy, '--out',
                                  tmp_path / 'dets.json'], capsys, elsewhere(tmp_path))
    assert status == 1  # the video refused, the .npy processed
    refusal = re.search(r'refused .*synthetic_0003\.mp4: (.*)', printed).group(1)
    assert 'pass its .npy features instead' in refusal
    assert list(detections(tmp_path / 'dets.json')) == ['synthetic_0002']


def test_moved_or_other_weights_are_named(trained, tmp_path, capsys, repo_root):
    root, ckpt = trained
    checkpoint = torch_load_safe(ckpt)
    record = checkpoint['meta']['data']['extraction']
    record['backbone']['pretrained'] = str(tmp_path / 'gone.pth')
    moved = tmp_path / 'moved.pth.tar'
    torch.save(checkpoint, moved)
    video = root / 'videos' / 'synthetic_0003.mp4'
    out = tmp_path / 'dets.json'
    status, printed = infer_here([repo_root / CONFIG, moved, video, '--out', out], capsys,
                                 tmp_path)
    assert status == 1 and not out.exists()
    assert re.search(r'gone\.pth: weights of the feature extractor not found; .*'
                     r'feature_extractor=CONFIG', printed)

    # the config key names an extraction config: with other weights it is refused (hash),
    # with the same weights in another folder it gives the recorded features
    other = tmp_path / 'copies' / 'tiny weights.pth'
    other.parent.mkdir()
    save_weights(other, seed=1)
    named = tmp_path / 'my extract.py'
    named.write_text(''.join(f'{k} = {v!r}\n' for k, v in extraction_cfg(root, other).items()))
    status, printed = infer_here([repo_root / CONFIG, moved, video, '--out', out], capsys,
                                 tmp_path, f'feature_extractor={named}')
    assert status == 1 and not out.exists()
    assert re.search(r'feature_extractor=.*my extract\.py: .*weights_sha256: recorded', printed)
    shutil.copy(root / 'tiny weights.pth', other)
    status, printed = infer_here([repo_root / CONFIG, moved, video, '--out', out], capsys,
                                 tmp_path, f'feature_extractor={named}')
    assert status == 0, printed
    status, _ = infer_here([repo_root / CONFIG, ckpt, root / 'features' / 'synthetic_0003.npy',
                            '--out', tmp_path / 'npy.json'], capsys, tmp_path)
    assert status == 0
    assert_same(detections(out)['synthetic_0003'],
                detections(tmp_path / 'npy.json')['synthetic_0003'])


def test_real_fixture_videos_equal_their_exported_npy(trained, tmp_path, capsys, repo_root,
                                                     video_fixture_dir):
    """A 30 fps H.264 file (decord, resampled to 15 fps) and a WebM without a duration
    header (the ffmpeg reader) through the export and through infer.py."""
    root, ckpt = trained
    data = tmp_path / 'fixture data'
    (data / 'videos').mkdir(parents=True)
    names = ['mmaction2_part0_30fps_1s.mp4', 'moviepy_no_duration_vp9.webm']
    for name in names:
        shutil.copy(video_fixture_dir / name, data / 'videos' / name)
    ids = [n.rsplit('.', 1)[0] for n in names]
    (data / 'annotations.json').write_text(json.dumps({'database': {
        v: dict(subset='validation', duration=1.0, annotations=[]) for v in ids}}))
    weights = root / 'tiny weights.pth'
    summary = extract_features(Config(extraction_cfg(data, weights)),
                               export_npy=data / 'features', progress=False)
    assert not summary.failed and sorted(summary.done) == sorted(ids)
    here = elsewhere(tmp_path)
    status, printed = infer_here([repo_root / CONFIG, ckpt, data / 'videos', '--out',
                                  tmp_path / 'videos.json'], capsys, here)
    assert status == 0, printed
    status, printed = infer_here([repo_root / CONFIG, ckpt, data / 'features', '--out',
                                  tmp_path / 'npy.json'], capsys, here)
    assert status == 0, printed
    from_videos, from_npy = detections(tmp_path / 'videos.json'), detections(tmp_path / 'npy.json')
    assert sorted(from_videos) == sorted(from_npy) == sorted(ids)
    for vid in ids:
        assert_same(from_videos[vid], from_npy[vid])
