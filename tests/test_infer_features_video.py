"""infer.py with a feature-based checkpoint on video files: videos -> extract_features
--export-npy -> a short ActionFormer training on the exported features -> infer.py on the
video files gives the detections of infer.py on their exported .npy (the checkpoint records
how the features were extracted). The same with features exported from frame folders
(videos -> extract_frames.py -> extract_features --export-npy): infer.py makes a video's
frames with the recorded frame settings first. Run from another folder, with spaces in
every path; the tiny backbone has seeded random weights saved to a file (its path and hash
are recorded)."""
import json
import logging
import re
import shutil

import pytest
import torch
from mmengine.config import Config

from test_own_data import SMALL_ACTIONFORMER, run_here
from vedatad.data.synthetic_videos import make_synthetic_videos
from vedatad.data.ffmpeg import extract_frames
from vedatad.engine import extract as extract_module
from vedatad.engine.extract import extract_features
from vedatad.models import build_backbone
from vedatad.utils.safe_load import torch_load_safe

BACKBONE = dict(type='VideoSwin', arch=None, embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                window_size=(4, 4, 4), drop_path_rate=0.0)
CONFIG = 'configs/own_data/features.py'


# how the frame folders are made: other values than the tool's defaults, so a video's frames
# made with the defaults would give other features
FRAME_ARGS = ['--fps', '15', '--short-side', '48', '--quality', '5']


def extraction_cfg(root, weights, export_name='features', source='videos'):
    return dict(
        data=dict(root=str(root / source), ann_file=str(root / 'annotations.json'),
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
    return root, train_one_epoch(root, root.parent / 'work dir', repo_root)


@pytest.fixture(scope='module')
def trained_on_frames(trained, repo_root):
    """(data root, checkpoint): the same videos through extract_frames.py, features exported
    from those frame folders, one epoch on them."""
    videos_root, _ = trained
    root = videos_root.parent / 'frame data'
    root.mkdir()
    shutil.copy(videos_root / 'annotations.json', root)
    status, _ = run_here('data/extract_frames.py', [
        videos_root / 'videos', root / 'frames', *FRAME_ARGS, '--no-progress'], _Capture())
    assert status == 0
    summary = extract_features(
        Config(extraction_cfg(root, videos_root / 'tiny weights.pth', source='frames')),
        export_npy=root / 'features', progress=False)
    assert not summary.failed and len(summary.done) == 4
    return root, train_one_epoch(root, root.parent / 'frames work dir', repo_root)


def train_one_epoch(root, work, repo_root):
    """The checkpoint of one epoch of the own-data feature config on ``root``'s features."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('OWN_DATA', str(root))
        patch.chdir(repo_root)
        status, printed = run_here('trainval.py', [
            CONFIG, '--work-dir', work, '--cfg-options', *SMALL_ACTIONFORMER,
            'train_cfg.epochs=1', 'scheduler.warmup_epochs=0', 'scheduler.epochs=1'],
            _Capture())
    assert status == 0, printed
    return work / 'latest.pth.tar'


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
    folder.mkdir(exist_ok=True)
    return folder


def assert_videos_detect_as_npy(ckpt, videos, features, ids, tmp_path, capsys, repo_root):
    """infer.py, run from another folder, gives the same detections for the ``videos`` as
    for their ``features`` (files or folders), one per id of ``ids``; returns the latter."""
    found = []
    for name, inputs in (('from videos', videos), ('from npy', features)):
        out = tmp_path / f'{name}.json'
        status, printed = infer_here([repo_root / CONFIG, ckpt, *inputs, '--out', out], capsys,
                                     elsewhere(tmp_path))
        assert status == 0, printed
        found.append(detections(out))
    from_videos, from_npy = found
    assert sorted(from_videos) == sorted(from_npy) == sorted(ids)
    for vid in ids:
        assert_same(from_videos[vid], from_npy[vid])
    return from_npy


def with_record(ckpt, path, change):
    """A copy of checkpoint ``ckpt`` at ``path`` whose extraction record ``change`` edits."""
    checkpoint = torch_load_safe(ckpt)
    change(checkpoint['meta']['data']['extraction'])
    torch.save(checkpoint, path)
    return path


def refusal_of(name, printed):
    """The one line refusing input ``name`` (exactly one such line)."""
    lines = [line for line in printed.splitlines() if line.startswith('refused ')
             and name in line]
    assert len(lines) == 1, printed
    return lines[0]


def test_checkpoint_records_how_its_features_were_extracted(trained):
    root, ckpt = trained
    info = json.loads((root / 'features' / 'features_info.json').read_text())
    record = torch_load_safe(ckpt)['meta']['data']['extraction']
    assert record == info['extraction']
    assert record['source'] == 'video files'
    assert record['frames'] is None and record['frames_unrepeatable'] is None
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
    from_npy = assert_videos_detect_as_npy(ckpt, videos,
                                           [root / 'features' / f'{v}.npy' for v in ids], ids,
                                           tmp_path, capsys, repo_root)
    here = elsewhere(tmp_path)

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
    external = with_record(ckpt, tmp_path / 'external features.pth.tar',
                           lambda record: record.clear())  # as if trained on I3D features
    video, npy = root / 'videos' / 'synthetic_0003.mp4', root / 'features' / 'synthetic_0002.npy'
    status, printed = infer_here([repo_root / CONFIG, external, video, npy, '--out',
                                  tmp_path / 'dets.json'], capsys, elsewhere(tmp_path))
    assert status == 1  # the video refused, the .npy processed
    refusal = re.search(r'refused .*synthetic_0003\.mp4: (.*)', printed).group(1)
    assert 'pass its .npy features instead' in refusal
    assert list(detections(tmp_path / 'dets.json')) == ['synthetic_0002']


def test_moved_or_other_weights_are_named(trained, tmp_path, capsys, repo_root):
    root, ckpt = trained
    gone = str(tmp_path / 'gone.pth')
    moved = with_record(ckpt, tmp_path / 'moved.pth.tar',
                        lambda record: record['backbone'].update(pretrained=gone))
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
    assert_videos_detect_as_npy(ckpt, [data / 'videos'], [data / 'features'], ids, tmp_path,
                                capsys, repo_root)


def test_frame_folder_checkpoint_records_the_frame_settings(trained_on_frames):
    root, ckpt = trained_on_frames
    record = torch_load_safe(ckpt)['meta']['data']['extraction']
    meta = json.loads((root / 'frames' / 'synthetic_0002' / 'meta.json').read_text())
    assert record['source'] == 'frame folders' and record['frames_unrepeatable'] is None
    assert record['frames'] == meta['frame_settings']
    assert (record['frames']['fps'], record['frames']['short_side'],
            record['frames']['quality']) == (15.0, 48, 5)


def test_videos_give_the_detections_of_their_frame_folders_npy(trained, trained_on_frames,
                                                               tmp_path, capsys, repo_root,
                                                               monkeypatch, caplog):
    """A video's frames are made as recorded, its features from them: the detections of
    the .npy that extract_frames.py + --export-npy made of the same video; one video's
    frames are on disk at a time, and none are left."""
    videos_root, _ = trained
    root, ckpt = trained_on_frames
    ids = ['synthetic_0002', 'synthetic_0003']
    made = []  # (frame folder, the folders next to it when it was made)

    def watched(video, frame_dir, **settings):
        made.append((frame_dir, sorted(p.name for p in frame_dir.parent.iterdir())))
        return extract_frames(video, frame_dir, **settings)

    monkeypatch.setattr(extract_module, 'extract_frames', watched)
    from_npy = assert_videos_detect_as_npy(
        ckpt, [videos_root / 'videos' / f'{v}.mp4' for v in ids],
        [root / 'features' / f'{v}.npy' for v in ids], ids, tmp_path, capsys, repo_root)
    assert [(folder.name, others) for folder, others in made] == [(v, []) for v in ids]
    assert not made[0][0].parent.exists()  # the temporary folder, frames and all
    assert 'may differ' not in caplog.text  # the same ffmpeg as the frame folders'

    # frames recorded as made by another ffmpeg: a warning, and the video is still detected
    other = with_record(ckpt, tmp_path / 'other ffmpeg.pth.tar',
                        lambda record: record['frames'].update(ffmpeg_version='0.1-other'))
    with caplog.at_level(logging.WARNING):
        status, printed = infer_here([repo_root / CONFIG, other,
                                      videos_root / 'videos' / f'{ids[0]}.mp4', '--out',
                                      tmp_path / 'other.json'], capsys, elsewhere(tmp_path))
    assert status == 0, printed
    assert re.search(r'made by ffmpeg 0\.1-other, this one is \S+: .* may differ', caplog.text)
    assert_same(detections(tmp_path / 'other.json')[ids[0]], from_npy[ids[0]])


def test_old_frame_folder_meta_refuses_videos_in_one_line(trained, trained_on_frames,
                                                          tmp_path, capsys, repo_root):
    """Features exported from a frame folder whose meta.json predates the frame settings:
    the record says why a video's frames cannot be made the same way, infer.py refuses
    videos with that reason and still detects in the .npy inputs."""
    videos_root, _ = trained
    root, ckpt = trained_on_frames
    old = tmp_path / 'old frames'
    shutil.copytree(root / 'frames' / 'synthetic_0001', old / 'frames' / 'synthetic_0001')
    meta_file = old / 'frames' / 'synthetic_0001' / 'meta.json'
    meta = json.loads(meta_file.read_text())
    del meta['frame_settings']
    meta_file.write_text(json.dumps(meta))
    database = json.loads((root / 'annotations.json').read_text())['database']
    (old / 'annotations.json').write_text(json.dumps(
        {'database': {'synthetic_0001': database['synthetic_0001']}}))
    summary = extract_features(
        Config(extraction_cfg(old, videos_root / 'tiny weights.pth', source='frames')),
        export_npy=old / 'features', progress=False)
    assert summary.done == ['synthetic_0001']  # the features themselves are fine
    record = json.loads((old / 'features' / 'features_info.json').read_text())['extraction']
    assert record['frames'] is None
    assert record['frames_unrepeatable'] == (f'{meta_file} does not record the frame settings '
                                             '(written by an older extract_frames)')

    refusing = with_record(ckpt, tmp_path / 'old frames.pth.tar',
                           lambda saved: saved.update(record))
    video = videos_root / 'videos' / 'synthetic_0003.mp4'
    status, printed = infer_here([repo_root / CONFIG, refusing, video,
                                  root / 'features' / 'synthetic_0002.npy', '--out',
                                  tmp_path / 'dets.json'], capsys, elsewhere(tmp_path))
    assert status == 1
    line = refusal_of('synthetic_0003.mp4', printed)
    assert 'extracted from frame folders whose frames a video cannot repeat: ' \
           f'{meta_file} does not record the frame settings' in line
    assert list(detections(tmp_path / 'dets.json')) == ['synthetic_0002']


def test_real_fixture_video_through_frame_folders(trained, trained_on_frames, tmp_path,
                                                  capsys, repo_root, video_fixture_dir):
    """A rotated, variable-frame-rate phone video: extract_frames.py with the recorded
    settings + --export-npy, and infer.py on the video, give the same detections."""
    videos_root, _ = trained
    _, ckpt = trained_on_frames
    data = tmp_path / 'fixture data'
    (data / 'videos').mkdir(parents=True)
    shutil.copy(video_fixture_dir / 'moviepy_fire2_phone_vfr_aac.mp4', data / 'videos')
    vid = 'moviepy_fire2_phone_vfr_aac'
    (data / 'annotations.json').write_text(json.dumps({'database': {
        vid: dict(subset='validation', duration=2.38, annotations=[])}}))
    status, _ = run_here('data/extract_frames.py', [data / 'videos', data / 'frames',
                                                    *FRAME_ARGS, '--no-progress'], capsys)
    assert status == 0
    summary = extract_features(
        Config(extraction_cfg(data, videos_root / 'tiny weights.pth', source='frames')),
        export_npy=data / 'features', progress=False)
    assert summary.done == [vid], summary.failed
    assert_videos_detect_as_npy(ckpt, [data / 'videos'], [data / 'features'], [vid], tmp_path,
                                capsys, repo_root)
