"""Feature datasets: item format, unit conversion, crops, and errors that name the video."""
import json
import random

import numpy as np
import pytest
import torch

import vedatad.data  # noqa: F401
from vedatad.data.feature_crop import crop_item
from vedatad.data.feature_datasets import FeatureFileError, list_collate
from vedatad.registry import COLLATE_FUNCTIONS, DATASETS


def _write_db(path, videos):
    path.write_text(json.dumps({'database': videos}))
    return str(path)


def _video(subset, duration, segments, fps=30.0):
    return {'subset': subset, 'duration': duration, 'fps': fps,
            'annotations': [{'segment': list(s), 'label': lab, 'label_id': lid}
                            for s, lab, lid in segments]}


@pytest.fixture
def thumos_like(tmp_path):
    feats = tmp_path / 'feats'
    feats.mkdir()
    videos = {
        'v1': _video('validation', 40.0, [((2.0, 6.0), 'A', 0), ((10.0, 12.0), 'B', 1)]),
        'v2': _video('validation', 30.0, [((1.0, 3.0), 'B', 1)]),
        'v3': _video('test', 20.0, [((4.0, 8.0), 'A', 0)]),
        'v4': _video('test', 20.0, []),   # no feature file: skipped like the release
    }
    for vid, length in (('v1', 300), ('v2', 220), ('v3', 150)):
        np.save(feats / f'{vid}.npy', np.random.rand(length, 8).astype(np.float32))
    json_file = _write_db(tmp_path / 'ann.json', videos)
    return dict(type='Thumos14FeatureDataset', json_file=json_file, feat_folder=str(feats),
                feat_stride=4, num_frames=16, input_dim=8, num_classes=2, max_seq_len=128,
                trunc_thresh=0.5, crop_ratio=None)


def test_item_keys_and_seconds_to_steps(thumos_like):
    ds = DATASETS.build(dict(thumos_like, split=['test'], is_training=False))
    assert [v['id'] for v in ds.videos] == ['v3']   # v4 has no features
    item = ds[0]
    assert set(item) == {'video_id', 'feats', 'segments', 'labels', 'fps', 'duration',
                         'feat_stride', 'feat_num_frames'}
    assert item['feats'].shape == (8, 150) and item['feats'].dtype == torch.float32
    # (t * fps - 0.5 * num_frames) / stride
    expected = torch.tensor([[(4.0 * 30 - 8) / 4, (8.0 * 30 - 8) / 4]])
    assert torch.allclose(item['segments'], expected)
    assert item['labels'].tolist() == [0]
    assert ds.label_names == {0: 'A', 1: 'B'}


def test_missing_features_are_skipped_with_warning(thumos_like, caplog):
    with caplog.at_level('WARNING'):
        ds = DATASETS.build(dict(thumos_like, split=['test'], is_training=False))
    assert len(ds) == 1
    assert 'skipped 1 videos' in caplog.text and 'v4' in caplog.text


def test_training_crop_respects_max_len(thumos_like):
    ds = DATASETS.build(dict(thumos_like, split=['validation'], is_training=True))
    random.seed(0)
    for _ in range(10):
        item = ds[0]
        assert item['feats'].shape[1] == 128
        assert len(item['segments']) >= 1
        assert (item['segments'][:, 0] >= -2.0 - 1e-6).all()  # offset = 0.5 * 16 / 4
        assert (item['segments'][:, 1] <= 128 + 2.0 + 1e-6).all()


def test_crop_ratio_on_short_video_and_trunc_thresh():
    feats = torch.arange(100.0)[None].repeat(2, 1)
    item = {'feats': feats, 'segments': torch.tensor([[10.0, 20.0], [80.0, 99.0]]),
            'labels': torch.tensor([0, 1])}
    random.seed(3)
    lengths = set()
    for _ in range(30):
        out = crop_item(item, max_seq_len=500, trunc_thresh=0.5, offset=0.0,
                        crop_ratio=(0.5, 0.6))
        length = out['feats'].shape[1]
        lengths.add(length)
        assert 50 <= length <= 60
        start = int(out['feats'][0, 0])
        # every kept action keeps at least half of its length inside the crop
        for seg in out['segments']:
            assert 0 <= seg[0] <= seg[1] <= length
        original = item['segments']
        inside = (original[:, 1].clamp(max=start + length) - original[:, 0].clamp(min=start)) \
            .clamp(min=0) / (original[:, 1] - original[:, 0])
        assert len(out['labels']) == int((inside >= 0.5).sum())
    assert len(lengths) > 1
    # without crop_ratio a short video is returned as is
    assert crop_item(item, 500, 0.5, 0.0, None) is item


def test_wrong_dim_names_video(thumos_like):
    ds = DATASETS.build(dict(thumos_like, input_dim=16, split=['test'], is_training=False))
    with pytest.raises(FeatureFileError, match='v3'):
        ds[0]


def test_wrong_num_classes_names_file(thumos_like):
    with pytest.raises(ValueError, match='num_classes=5'):
        DATASETS.build(dict(thumos_like, num_classes=5, split=['test']))


def test_epic_npz_and_missing_file_error(tmp_path):
    feats = tmp_path / 'f'
    feats.mkdir()
    videos = {'P01_01': _video('training', 60.0, [((1.0, 5.0), 'take', 3)]),
              'P01_02': _video('training', 60.0, [((2.0, 4.0), 'put', 1)])}
    json_file = _write_db(tmp_path / 'epic.json', videos)
    np.savez(feats / 'P01_01.npz', feats=np.ones((100, 6), np.float32))
    cfg = dict(type='EpicKitchensFeatureDataset', json_file=json_file, feat_folder=str(feats),
               feat_stride=16, num_frames=32, default_fps=30, input_dim=6, num_classes=5,
               split=['training'], is_training=False)
    with pytest.raises(FeatureFileError, match='P01_02'):
        DATASETS.build(cfg)
    np.savez(feats / 'P01_02.npz', other=np.ones((100, 6), np.float32))
    ds = DATASETS.build(cfg)
    assert ds.empty_label_ids == [0, 2, 4]
    assert ds[0]['feats'].shape == (6, 100)
    with pytest.raises(FeatureFileError, match="P01_02.*'feats'"):
        ds[1]


def test_ego4d_concatenates_and_checks_lengths(tmp_path):
    folders = [tmp_path / 'sf', tmp_path / 'ev']
    for f in folders:
        f.mkdir()
    videos = {'c1': _video('training', 30.0, [((1.0, 5.0), 'x', 0)]),
              'c2': _video('training', 30.0, [((1.0, 5.0), 'x', 0)])}
    json_file = _write_db(tmp_path / 'ego.json', videos)
    np.save(folders[0] / 'c1.npy', np.zeros((50, 4), np.float32))
    np.save(folders[1] / 'c1.npy', np.ones((50, 2), np.float32))
    np.save(folders[0] / 'c2.npy', np.zeros((50, 4), np.float32))
    np.save(folders[1] / 'c2.npy', np.ones((49, 2), np.float32))
    ds = DATASETS.build(dict(type='Ego4DFeatureDataset', json_file=json_file,
                             feat_folder=[str(f) for f in folders], feat_stride=16,
                             num_frames=32, default_fps=30, input_dim=[4, 2], num_classes=1,
                             split=['training'], is_training=False))
    feats = ds[0]['feats']
    assert feats.shape == (6, 50) and feats[:4].sum() == 0 and feats[4:].mean() == 1
    with pytest.raises(FeatureFileError, match='c2.*differ in length'):
        ds[1]


def test_activitynet_resampling_and_duplicates(tmp_path):
    feats = tmp_path / 'f'
    feats.mkdir()
    dup = ((3.0, 9.0), 'run', 7)
    videos = {'abc': _video('validation', 20.0, [dup, dup, ((12.0, 12.0), 'run', 7),
                                                   ((1.0, 4.0), 'jump', 2)], fps=15)}
    json_file = _write_db(tmp_path / 'anet.json', videos)
    ramp = np.linspace(0, 1, 50, dtype=np.float32)[:, None].repeat(3, 1)  # T=50, C=3
    np.save(feats / 'v_abc.npy', ramp)
    ds = DATASETS.build(dict(type='ActivityNetFeatureDataset', json_file=json_file,
                             feat_folder=str(feats), file_prefix='v_', feat_stride=16,
                             num_frames=16, default_fps=15, input_dim=3, num_classes=1,
                             max_seq_len=192, force_upsampling=True, split=['validation'],
                             is_training=False))
    item = ds[0]
    assert item['feats'].shape == (3, 192)
    # linear interpolation of a ramp stays a monotone ramp over the same range
    assert torch.all(item['feats'][0, 1:] >= item['feats'][0, :-1])
    assert abs(item['feats'][0, 0].item()) < 0.01 and abs(item['feats'][0, -1].item() - 1) < 0.01
    stride = ((50 - 1) * 16 + 16) / 192
    assert item['feat_stride'] == pytest.approx(stride)
    assert item['feat_num_frames'] == pytest.approx(stride)
    assert len(item['labels']) == 2 and item['labels'].tolist() == [0, 0]   # duplicates dropped
    seg = item['segments'][0]
    assert seg[0].item() == pytest.approx(3.0 * 15 / stride - 0.5, rel=1e-5)
    assert ds.label_names[7] == 'run'


def test_list_collate_is_registered():
    assert COLLATE_FUNCTIONS.get('list_collate') is list_collate
    batch = [{'a': 1}, {'a': 2}]
    assert list_collate(batch) == batch


# ---------------------------------------------------------------------- generic / bad input
def _generic(tmp_path, database, arrays, **kwargs):
    feats = tmp_path / 'feats'
    feats.mkdir(exist_ok=True)
    for name, array in arrays.items():
        if name.endswith('.npz'):
            np.savez(feats / name, **array)
        else:
            np.save(feats / name, array)
    json_file = _write_db(tmp_path / 'ann.json', database)
    cfg = dict(type='GenericFeatureDataset', json_file=json_file, feat_folder=str(feats))
    cfg.update(kwargs)
    return cfg


def test_generic_dataset_measures_and_reads_features_info(tmp_path):
    database = {'a': {'subset': 'mine', 'duration': 20.0, 'fps': 25.0,
                      'annotations': [{'segment': [1.0, 3.0], 'label': 'x'},
                                      {'segment': [4.0, 4.0], 'label': 'y'}]},
                'b': {'subset': 'other', 'duration': 20.0,
                      'annotations': [{'segment': [1.0, 2.0], 'label': 'y'}]}}
    cfg = _generic(tmp_path, database, {'a.npy': np.ones((50, 3), np.float32),
                                        'b.npy': np.ones((50, 3), np.float32)})
    with pytest.raises(ValueError, match='set the dataset.s feat_stride'):
        DATASETS.build(dict(cfg, split='mine'))
    (tmp_path / 'feats' / 'features_info.json').write_text(json.dumps(
        {'feat_stride': 8, 'feat_num_frames': 16, 'fps': 10.0}))
    with pytest.warns(UserWarning, match='zero-length'):
        ds = DATASETS.build(dict(cfg, split='mine', is_training=False))
    assert (ds.feat_stride, ds.num_frames, ds.input_dim, ds.num_classes) == (8, 16, 3, 2)
    item = ds[0]
    assert item['fps'] == 25.0  # the annotation's own rate wins over features_info's
    assert item['segments'].shape == (1, 2)  # the zero-length segment has no target
    other = DATASETS.build(dict(cfg, split='other', is_training=False))
    assert other[0]['fps'] == 10.0  # a video without fps gets the default
    with pytest.raises(ValueError, match=r"no video has subset \['validation'\].*'mine'"):
        DATASETS.build(dict(cfg, split='validation'))


def test_generic_dataset_missing_npz_and_class_count(tmp_path):
    database = {'a': {'subset': 's', 'duration': 20.0, 'fps': 25.0,
                      'annotations': [{'segment': [1.0, 3.0], 'label': 'x'}]},
                'b': {'subset': 's', 'duration': 20.0, 'fps': 25.0,
                      'annotations': [{'segment': [1.0, 2.0], 'label': 'y'}]}}
    cfg = _generic(tmp_path, database, {'a.npz': {'feats': np.ones((50, 3), np.float32)}},
                   split='s', feat_stride=4, num_frames=8, file_ext='.npz')
    with pytest.raises(FeatureFileError, match=r"1 videos of split \('s',\) have no feature"):
        DATASETS.build(cfg)
    ds = DATASETS.build(dict(cfg, missing='skip'))
    assert len(ds) == 1 and ds[0]['feats'].shape == (3, 50) and ds.num_classes == 2
    with pytest.raises(ValueError, match='2 classes in the annotations, but num_classes=3'):
        DATASETS.build(dict(cfg, missing='skip', num_classes=3))


@pytest.mark.parametrize('is_training', [True, False])
def test_nan_features_are_an_error_naming_file_and_video(thumos_like, tmp_path, is_training):
    bad = np.random.rand(150, 8).astype(np.float32)
    bad[40, 3] = np.inf
    np.save(tmp_path / 'feats' / 'v3.npy', bad)
    ds = DATASETS.build(dict(thumos_like, split=['test'], is_training=is_training))
    with pytest.raises(FeatureFileError, match=r"video v3: features in .*v3.npy hold 1 NaN/inf "
                                               r"value\(s\) \(first at step 40, channel 3\)"):
        ds[0]


def test_label_ids_shared_by_two_labels_are_refused(thumos_like, tmp_path):
    database = json.loads(open(thumos_like['json_file']).read())['database']
    database['v2']['annotations'][0]['label_id'] = 0  # 'B' now shares id 0 with 'A'
    _write_db(tmp_path / 'ann.json', database)
    from vedatad.data.annotations import AnnotationError
    with pytest.raises(AnnotationError, match=r"label_id 0 is given to labels \['A', 'B'\]"):
        DATASETS.build(dict(thumos_like, split=['validation']))
