"""The config and data checks report every problem at once, each naming the file, video or
key, before any work: config keys, features, videos, splits, classes and the memory bank."""
import json

import numpy as np
import pytest
from mmengine.config import Config

import vedatad.data  # noqa: F401
import vedatad.models  # noqa: F401
from vedatad.engine.checks import check_config, key_problems
from vedatad.membank import MemoryBank
from vedatad.engine.extract import backbone_name


def _features_cfg(tmp_path, database, shapes, **dataset):
    feats = tmp_path / 'feats'
    feats.mkdir(exist_ok=True)
    for vid, shape in shapes.items():
        np.save(feats / f'{vid}.npy', np.zeros(shape, np.float32))
    (tmp_path / 'ann.json').write_text(json.dumps({'database': database}))
    data = dict(type='GenericFeatureDataset', json_file=str(tmp_path / 'ann.json'),
                feat_folder=str(feats), feat_stride=4, num_frames=8, max_seq_len=64, **dataset)
    return Config(dict(
        model=dict(type='ActionFormer', n_mha_win_size=-1, backbone_arch=(2, 2, 3),
                   regression_range=[(0, 4), (4, 8), (8, 16), (16, 10000)]),
        train_dataset=dict(data, split='training'),
        val_dataset=dict(data, split='validation', is_training=False),
        train_cfg=dict(epochs=2), optimizer=dict(lr=1e-3)))


def _video(subset, actions, duration=10.0, fps=10.0):
    return {'subset': subset, 'duration': duration, 'fps': fps,
            'annotations': [{'segment': list(seg), 'label': label} for seg, label in actions]}


def test_config_keys_are_strict_with_suggestions(tmp_path):
    db = {'a': _video('training', [((1, 2), 'x')]), 'b': _video('validation', [((1, 2), 'x')])}
    cfg = _features_cfg(tmp_path, db, {'a': (20, 4), 'b': (20, 4)})
    cfg.merge_from_dict({'trian_cfg': {}, '_helper': 1, 'train_cfg.epochz': 3,
                         'train_dataset.fpz': 1, 'model.train_cfg.droppth': 0.1,
                         'val_dataset.type': 'GenericFeatureDatset'})
    problems = key_problems(cfg)
    assert problems == [
        "unknown config key 'trian_cfg'; did you mean 'train_cfg'? (helper variables of a "
        'config file must start with "_")',
        "unknown config key 'model.train_cfg.droppth'; did you mean "
        "'model.train_cfg.droppath'?",
        "unknown config key 'train_dataset.fpz'",
        "val_dataset.type: 'GenericFeatureDatset' is not a registered model or dataset; did "
        "you mean 'GenericFeatureDataset'?",
        "unknown config key 'train_cfg.epochz'; did you mean 'train_cfg.epochs'?"]
    report = check_config(cfg, 'all', progress=False)
    assert report.problems == problems  # nothing else is judged on a wrong config


def test_feature_problems_are_all_reported(tmp_path):
    db = {'ok': _video('training', [((1, 2), 'jump')]),
          'nofile': _video('training', [((1, 2), 'run')]),
          'wide': _video('training', [((1, 2), 'jump')]),
          'empty': _video('training', [((1, 2), 'jump')]),
          'short': _video('training', [((1, 2), 'jump'), ((8, 9.5), 'jump')], duration=10.0),
          'val': _video('validation', [((1, 2), 'sit')])}
    shapes = {'ok': (30, 4), 'wide': (30, 5), 'empty': (0, 4), 'short': (10, 4), 'val': (30, 4)}
    cfg = _features_cfg(tmp_path, db, shapes, input_dim=4)
    report = check_config(cfg, 'all', progress=False)
    text = '\n'.join(report.problems)
    assert "1 of 5 videos of split ['training'] have no feature file" in text and 'nofile' in text
    assert "video 'wide': features in" in text and '(30, 5), expected (T > 0, 4)' in text
    assert "video 'empty'" in text and '(0, 4)' in text
    notes = '\n'.join(report.notes)
    # (10 - 1) steps x 4 frames + 8 = 44 frames = 4.4 s of a 10 s video: an action is lost
    assert "in 1 video(s) the annotation duration exceeds what the features cover" in notes
    assert "'short' 5.6 s short (features cover 4.4 s), 1 action(s) past their end" in notes
    assert "1 class(es)" in notes and 'sit' in notes  # a label without a training example
    assert not report.ok


def test_unknown_split_lists_the_existing_ones(tmp_path):
    db = {'a': _video('train', [((1, 2), 'x')]), 'b': _video('val', [((1, 2), 'x')])}
    cfg = _features_cfg(tmp_path, db, {'a': (20, 4), 'b': (20, 4)})
    report = check_config(cfg, 'train', progress=False)
    assert any("has subset ['training']; the splits there are 'train' (1 videos), 'val' (1 "
               "videos)" in p for p in report.problems), report.problems


def test_deep_check_finds_nan(tmp_path):
    db = {'a': _video('training', [((1, 2), 'x')]), 'b': _video('validation', [((1, 2), 'x')])}
    cfg = _features_cfg(tmp_path, db, {'a': (20, 4), 'b': (20, 4)})
    bad = np.zeros((20, 4), np.float32)
    bad[7, 2] = np.nan
    np.save(tmp_path / 'feats' / 'b.npy', bad)
    assert check_config(cfg, 'all', progress=False).ok  # headers only
    report = check_config(cfg, 'all', progress=False, deep=True)
    assert any("video 'b'" in p and 'NaN/inf' in p and 'step 7, channel 2' in p
               for p in report.problems), report.problems


def test_model_and_dataset_disagree(tmp_path):
    db = {'a': _video('training', [((1, 2), 'x')]), 'b': _video('validation', [((1, 2), 'y')])}
    cfg = _features_cfg(tmp_path, db, {'a': (20, 4), 'b': (20, 4)})
    cfg.model.num_classes = 3
    report = check_config(cfg, 'train', progress=False)
    assert report.problems == [
        'model.num_classes=3 contradicts train_dataset.num_classes (measured from the data)=2: '
        'remove model.num_classes (the model takes it from the dataset) or make the two agree']


# ---------------------------------------------------------------------- videos and the bank
DEMO = dict(type='VideoSwin', arch='demo', pretrained=None)


def _video_setup(tmp_path, frames, bank_frames=None, complete=True, fps=15.0, crop=56):
    """Frame folders (empty images: nothing is decoded by the checks), annotations, and
    a bank holding ``bank_frames`` (video id -> frame count)."""
    root = tmp_path / 'frames'
    database = {}
    for vid, (n, subset) in frames.items():
        (root / vid).mkdir(parents=True)
        (root / vid / 'meta.json').write_text(json.dumps(dict(num_frames=n, fps=15.0,
                                                              pattern='%05d.jpg')))
        for i in range(n):  # counted, never opened
            (root / vid / f'{i + 1:05d}.jpg').touch()
        database[vid] = _video(subset, [((1, 3), 'a' if len(database) % 2 else 'b')],
                               duration=n / 15.0, fps=15.0)
    (tmp_path / 'ann.json').write_text(json.dumps({'database': database}))
    bank = MemoryBank.create(tmp_path / 'bank', feat_dim=128, backbone=backbone_name(DEMO),
                             config=dict(data=dict(fps=fps, crop_size=crop)))
    for vid, n in (bank_frames or {}).items():
        bank.add_video(vid, n)
        if complete:
            bank.mark_complete(vid)
    data = dict(type='GenericVideoDataset', ann_file=str(tmp_path / 'ann.json'),
                data_prefix=str(root), window_size=160,
                pipeline_cfg=dict(short_side=64, crop_size=56))
    return Config(dict(
        model=dict(type='TALLFormer', backbone=DEMO,
                   membank=dict(template=str(tmp_path / 'bank')),
                   tcm=dict(type='TemporalConsistencyModule', out_channels=64, num_heads=4),
                   detector=dict(type='ActionFormer', backbone_arch=(2, 1, 2),
                                 regression_range=[(0, 4), (4, 8), (8, 10000)])),
        train_dataset=dict(data, subset='training', mode='train'),
        val_dataset=dict(data, subset='validation', mode='test')))


def test_bank_agrees_with_dataset_and_model(tmp_path):
    frames = {'v0': (100, 'training'), 'v1': (90, 'training'), 'v2': (80, 'validation')}
    cfg = _video_setup(tmp_path, frames, {'v0': 100, 'v1': 90})
    report = check_config(cfg, 'all', str(tmp_path / 'work'), progress=False)
    assert report.ok, report.format()
    assert any('2 of 2 training videos present, feature size 128' in s for s in report.summary)


def test_bank_problems_are_all_named(tmp_path):
    frames = {'v0': (100, 'training'), 'v1': (90, 'training'), 'v2': (70, 'training'),
              'v3': (80, 'validation')}
    cfg = _video_setup(tmp_path, frames, {'v0': 100, 'v1': 91}, complete=False, fps=10.0,
                       crop=112)
    cfg.model.backbone = dict(DEMO, pretrained='w.pth')
    report = check_config(cfg, 'train', str(tmp_path / 'work'), progress=False)
    text = '\n'.join(report.problems)
    assert '1 training video(s) are not in the bank' in text and 'v2' in text
    assert '2 training video(s) are incomplete in the bank' in text
    assert 'extracted at 10.0 fps, but the dataset reads 2 video(s) at another rate' in text
    assert 'v1 (bank 91, dataset 90)' in text
    assert 'features of 112-pixel crops, but train_dataset.pipeline_cfg.crop_size=56' in text
    assert 'made by backbone VideoSwin(arch=demo, weights=None), but model.backbone is ' \
        'VideoSwin(arch=demo, weights=w.pth)' in text
    assert len(report.problems) == 6, report.format()


def test_the_working_bank_is_checked_when_it_exists(tmp_path):
    frames = {'v0': (100, 'training'), 'v1': (80, 'validation')}
    cfg = _video_setup(tmp_path, frames, {'v0': 100})
    MemoryBank.create(tmp_path / 'work' / 'membank', feat_dim=64, backbone='other')
    report = check_config(cfg, 'train', str(tmp_path / 'work'), progress=False)
    assert any(p.startswith('working memory bank') and 'feature size 64' in p
               for p in report.problems), report.problems


def test_missing_ambiguous_and_short_videos(tmp_path):
    frames = {'v0': (100, 'training'), 'v1': (90, 'training'), 'v3': (80, 'validation')}
    cfg = _video_setup(tmp_path, frames, {'v0': 100, 'v1': 90})
    database = json.loads((tmp_path / 'ann.json').read_text())['database']
    database['gone'] = _video('training', [((1, 2), 'a')])
    database['v0']['duration'] = 12.0
    database['v0']['annotations'].append({'segment': [9.0, 11.0], 'label': 'a'})
    (tmp_path / 'ann.json').write_text(json.dumps({'database': database}))
    (tmp_path / 'frames' / 'v1.mp4').write_bytes(b'')  # a second entry for one id
    report = check_config(cfg, 'train', str(tmp_path / 'work'), progress=False)
    text = '\n'.join(report.problems)
    assert "1 of 3 videos of subset 'training' are not in" in text and 'gone' in text
    assert "video 'v1' matches several entries" in text and 'v1.mp4' in text
    notes = '\n'.join(report.notes)
    assert "'v0' 5.33 s short (the video has 6.67 s), 1 action(s) past its end" in notes


@pytest.mark.parametrize('mode', ['train', 'test', 'all'])
def test_label_maps_and_eval(tmp_path, mode):
    frames = {'v0': (100, 'training'), 'v1': (80, 'validation')}
    cfg = _video_setup(tmp_path, frames, {'v0': 100})
    cfg.eval = dict(gt_json=str(tmp_path / 'ann.json'), subset='testing')
    report = check_config(cfg, mode, str(tmp_path / 'work'), progress=False)
    found = any("eval.subset='testing': no video" in p for p in report.problems)
    assert found == (mode != 'train')


def test_incomplete_frame_folders(tmp_path):
    frames = {'v0': (100, 'training'), 'v1': (90, 'training'), 'v2': (80, 'validation')}
    cfg = _video_setup(tmp_path, frames, {'v0': 100, 'v1': 90})
    (tmp_path / 'frames' / 'v1' / '00090.jpg').unlink()
    report = check_config(cfg, 'train', str(tmp_path / 'work'), progress=False)
    assert any("video 'v1': frame folder" in p and 'holds 89 images but its meta.json '
               'promises 90' in p for p in report.problems), report.problems
    (tmp_path / 'frames' / 'v0' / 'meta.json').unlink()
    cfg.train_dataset.fps = 15.0  # a hand-made folder is readable with a frame rate
    report = check_config(cfg, 'train', str(tmp_path / 'work'), progress=False)
    assert any('1 frame folder(s) have no meta.json' in n and 'v0' in n for n in report.notes)


def test_a_temporary_folder_too_long_for_loader_workers_is_named(tmp_path, monkeypatch):
    # loader workers talk over Unix sockets in the temporary folder: past the socket path
    # limit a worker cannot send and the loader would wait forever, so it is refused first
    import tempfile

    import torch

    from vedatad.engine.dataloader import build_dataloader
    from vedatad.utils.workers import WorkerTempDirError
    db = {'a': _video('training', [((1, 2), 'x')]), 'b': _video('validation', [((1, 2), 'x')])}
    cfg = _features_cfg(tmp_path, db, {'a': (20, 4), 'b': (20, 4)})
    cfg.merge_from_dict({'train_dataloader': dict(num_workers=2),
                         'val_dataloader': dict(num_workers=0)})
    long_dir = tmp_path / ('d' * 90)
    long_dir.mkdir()
    assert check_config(cfg, 'all', progress=False).ok
    monkeypatch.setattr(tempfile, 'tempdir', str(long_dir))
    report = check_config(cfg, 'all', progress=False)
    assert [p for p in report.problems if 'TMPDIR' in p] == [
        f'train_dataloader.num_workers: the temporary folder {long_dir} is '
        f'{len(str(long_dir))} bytes long; loader workers exchange data over Unix sockets '
        'inside it, which allows at most 75: set TMPDIR to a shorter folder (e.g. '
        'TMPDIR=/tmp) or train_dataloader.num_workers=0']
    with pytest.raises(WorkerTempDirError, match='num_workers'):
        build_dataloader(torch.arange(4), dict(num_workers=1), False, 0, 0, 1)
    build_dataloader(torch.arange(4), dict(num_workers=0), False, 0, 0, 1)  # no workers: fine
