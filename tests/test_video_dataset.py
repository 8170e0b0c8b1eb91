"""Video dataset: windows on the chunk grid, targets in window frames, test windows, collate."""
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vedatad.data.synthetic_videos import class_style, make_synthetic_videos
from vedatad.data.video_dataset import (VideoDataset, collate_video_windows,
                                        window_frames_to_seconds)
from vedatad.data.video_jobs import extract_frames_folder
from vedatad.registry import COLLATE_FUNCTIONS, DATASETS

torch.set_num_threads(1)
RAW = dict(type='Normalize', mean=(0, 0, 0), std=(1, 1, 1))  # keep pixel values 0..255


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    make_synthetic_videos(out, num_videos=6, seconds=8, size=64, num_classes=3, seed=3)
    return out


def colour_present(window, label):
    """(W,) bool: frames of a (3, W, H, Wd) 0..255 window showing class ``label``'s object."""
    colour = torch.tensor(class_style(label)[1], dtype=torch.float32)[:, None, None, None]
    close = (window - colour).abs().amax(dim=0) < 40  # W, H, Wd
    return close.float().mean(dim=(1, 2)) > 0.02


def test_train_item_targets_match_pixels(synthetic):
    pipeline = [dict(type='TemporalRandomCrop', window_size=64, min_coverage=1e-6),
                dict(type='DecodeFrames'), RAW, dict(type='FormatWindow')]
    ds = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', subset='training',
                      pipeline=pipeline)
    assert len(ds) == 4 and ds.class_names == [class_style(k)[0] for k in range(3)]
    torch.manual_seed(0)
    for index in range(len(ds)):
        for _ in range(2):
            item = ds[index]
            assert item['imgs'].shape == (3, 64, 64, 64) and item['masks'].all()
            assert item['frame_offset'] % 32 == 0 and item['fps'] == 15.0
            assert item['num_frames'] == 120 and item['duration'] == pytest.approx(8.0)
            assert len(item['gt_labels']) >= 1
            for label in range(3):
                expected = torch.zeros(64, dtype=torch.bool)
                for (s, e), k in zip(item['gt_segments'].tolist(), item['gt_labels'].tolist()):
                    if k == label:
                        expected[round(s):round(e)] = True
                assert torch.equal(colour_present(item['imgs'], label), expected)


def test_train_item_seconds_roundtrip(synthetic):
    ds = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', subset='training',
                      window_size=96, pipeline_cfg=dict(short_side=64, crop_size=48,
                                                        min_coverage=0.0001))
    torch.manual_seed(1)
    item = ds[0]
    assert item['imgs'].shape == (3, 96, 48, 48) and item['imgs'].dtype == torch.float32
    assert item['masks'].sum() == min(96, 120 - item['frame_offset'])
    truth = [s for s in ds.videos[0].segments]
    back = window_frames_to_seconds(item['gt_segments'].numpy(), item['frame_offset'], 15.0)
    for start, end in back:
        assert any(s.start - 1e-5 <= start and end <= s.end + 1e-5 for s in truth)


def test_short_video_padded_with_mask(synthetic):
    ds = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', subset='training',
                      window_size=160, pipeline_cfg=dict(short_side=32, crop_size=32))
    item = ds[1]
    assert item['frame_offset'] == 0 and item['imgs'].shape == (3, 160, 32, 32)
    assert item['masks'].tolist() == [True] * 120 + [False] * 40
    assert torch.equal(item['imgs'][:, 120:], torch.zeros(3, 40, 32, 32))


def test_test_items_hold_every_window(synthetic):
    pipeline = [dict(type='SlidingWindows', window_size=64, overlap=0.5),
                dict(type='DecodeFrames'), dict(type='CenterCrop', size=48), RAW,
                dict(type='FormatWindows')]
    ds = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', subset='validation',
                      mode='test', pipeline=pipeline)
    assert len(ds) == 2
    item = ds[0]
    assert item['frame_offsets'].tolist() == [0, 32, 64]
    assert item['imgs'].shape == (3, 3, 64, 48, 48) and item['masks'].shape == (3, 64)
    frames = ds.open(0).read(np.arange(120))[:, 8:56, 8:56]  # T, 48, 48, 3
    for w, off in enumerate(item['frame_offsets'].tolist()):
        n = int(item['masks'][w].sum())
        assert n == min(64, 120 - off)
        window = item['imgs'][w, :, :n].permute(1, 2, 3, 0).numpy()
        assert np.array_equal(window, frames[off:off + n].astype(np.float32))
    assert 'gt_segments' not in item


def test_collate_train_and_test_batches(synthetic):
    train = DATASETS.build(dict(type='VideoDataset', ann_file=str(synthetic / 'annotations.json'),
                                data_prefix=str(synthetic / 'videos'), subset='training',
                                window_size=64, pipeline_cfg=dict(short_side=32, crop_size=32)))
    collate = COLLATE_FUNCTIONS.get('collate_video_windows')
    assert collate is collate_video_windows
    batch = next(iter(DataLoader(train, batch_size=3, collate_fn=collate)))
    assert batch['imgs'].shape == (3, 3, 64, 32, 32) and batch['masks'].shape == (3, 64)
    assert batch['video_index'].tolist() == [0, 1, 2]
    assert (batch['frame_offsets'] % 32 == 0).all()
    assert len(batch['gt_segments']) == 3 and batch['gt_labels'][0].dtype == torch.long
    assert [m['video_id'] for m in batch['metas']] == [v.video_id for v in train.videos[:3]]
    test = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', mode='test',
                        subset='validation', window_size=64,
                        pipeline_cfg=dict(short_side=32, crop_size=32, overlap=0.5))
    batch = collate([test[0], test[1]])
    assert batch['imgs'].shape == (6, 3, 64, 32, 32)
    assert batch['video_index'].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch['frame_offsets'].tolist() == [0, 32, 64] * 2
    assert 'gt_segments' not in batch and batch['metas'][1]['num_frames'] == 120
    loader = DataLoader(test, batch_size=1, num_workers=1, collate_fn=collate)
    for b, single in enumerate(loader):  # strided window views survive the worker hand-over
        assert torch.equal(single['imgs'], batch['imgs'][3 * b:3 * b + 3])


def test_frame_folders_give_the_same_windows(synthetic, tmp_path):
    summary = extract_frames_folder(synthetic / 'videos', tmp_path, progress=False, fps=15)
    assert len(summary.done) == 6 and not summary.failed
    kwargs = dict(subset='validation', mode='test', window_size=64,
                  pipeline=[dict(type='SlidingWindows', window_size=64), dict(type='DecodeFrames'),
                            RAW, dict(type='FormatWindows')])
    from_frames = VideoDataset(synthetic / 'annotations.json', tmp_path, **kwargs)[0]
    from_video = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', **kwargs)[0]
    assert from_frames['num_frames'] == from_video['num_frames'] == 120
    assert from_frames['fps'] == from_video['fps'] == 15.0
    assert torch.equal(from_frames['frame_offsets'], from_video['frame_offsets'])
    assert (from_frames['imgs'] - from_video['imgs']).abs().mean() < 4  # JPEG vs decoded


def test_missing_videos_and_unknown_labels(synthetic, tmp_path):
    with pytest.raises(FileNotFoundError, match='6 video\\(s\\).*synthetic_0000'):
        VideoDataset(synthetic / 'annotations.json', tmp_path, window_size=64)
    ds = VideoDataset(synthetic / 'annotations.json', tmp_path, window_size=64, missing='skip')
    assert len(ds) == 0
    with pytest.raises(KeyError, match='not in class_names'):
        VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', window_size=64,
                     class_names=['only_this'])
    with pytest.raises(ValueError, match='window_size'):
        VideoDataset(synthetic / 'annotations.json', synthetic / 'videos')


def test_lazy_windows_equal_eager_windows(synthetic):
    kwargs = dict(subset='validation', mode='test', window_size=64,
                  pipeline_cfg=dict(short_side=48, crop_size=40, overlap=0.5))
    eager = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', **kwargs)
    lazy = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos',
                        lazy_windows=True, **kwargs)
    a, b = eager[1], lazy[1]
    assert 'imgs' not in b and len(b['windows']) == 3
    assert torch.equal(a['masks'], b['masks']) and torch.equal(a['frame_offsets'],
                                                               b['frame_offsets'])
    batch = collate_video_windows([b])
    assert 'imgs' not in batch and batch['video_index'].tolist() == [0, 0, 0]
    windows = pickle.loads(pickle.dumps(batch['windows'][0]))  # crosses worker processes
    assert torch.allclose(windows.load([2, 0]), a['imgs'][[2, 0]], atol=1e-5)
    with pytest.raises(ValueError, match='test-mode'):
        VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', window_size=64,
                     lazy_windows=True)
