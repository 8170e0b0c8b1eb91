"""Video dataset: windows on the chunk grid, targets in window frames, test windows, collate."""
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vedatad.data.synthetic_videos import class_style, make_synthetic_videos
from vedatad.data.video_dataset import (IMAGENET_MEAN, IMAGENET_STD, VideoDataset,
                                        collate_video_windows,
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


# ------------------------------------------------------------------ bank-backed train items
FEAT = 8


def fill_bank(path, ds, complete=True, frames=None):
    """A bank holding every video of ``ds``: chunk c of video i is i * 100 + c + 1."""
    from vedatad.membank import MemoryBank
    bank = MemoryBank.create(path, feat_dim=FEAT, backbone='test')
    for i, video in enumerate(ds.videos):
        vid = video.video_id
        bank.add_video(vid, frames or ds.open(i).num_frames)
        n = bank.num_chunks(vid)
        values = np.repeat(i * 100.0 + np.arange(n) + 1, 16)[:, None]
        bank.write_chunks(vid, list(range(n)), np.broadcast_to(values, (n * 16, FEAT)), -1)
        if complete:
            bank.mark_complete(vid)
    return bank


def fresh_dataset(synthetic, data_prefix=None, **cfg):
    pipeline_cfg = dict(dict(short_side=64, crop_size=48, keep_ratio=0.34, min_coverage=1e-6),
                        **cfg)
    return VideoDataset(synthetic / 'annotations.json', data_prefix or synthetic / 'videos',
                        subset='training', window_size=96, pipeline_cfg=pipeline_cfg)


def test_fresh_items_decode_only_the_fresh_chunks(synthetic, tmp_path, monkeypatch):
    from vedatad.data import video_readers
    from vedatad.data.video_jobs import extract_frames_folder
    extract_frames_folder(synthetic / 'videos', tmp_path / 'frames', progress=False, fps=15)
    decoded, files = [], []
    real_read, real_load = video_readers.VideoReader.read, video_readers.FrameFolderReader._load
    monkeypatch.setattr(video_readers.VideoReader, 'read',
                        lambda self, idx: decoded.append(len(idx)) or real_read(self, idx))
    monkeypatch.setattr(video_readers.FrameFolderReader, '_load',
                        lambda self, i: files.append(i) or real_load(self, i))
    for prefix in (synthetic / 'videos', tmp_path / 'frames'):
        ds = fresh_dataset(synthetic, prefix)
        ds.attach_bank(fill_bank(tmp_path / f'bank_{prefix.name}', ds))
        ds.set_epoch_seed(0)
        decoded.clear(), files.clear()
        for index in range(len(ds)):
            item = ds[index]
            (chunk,) = item['fresh_chunks'].tolist()  # one of the window's 3 chunks
            assert item['fresh_imgs'].shape == (1, 3, 32, 48, 48)
            assert item['fresh_imgs'].dtype == torch.uint8 and 'imgs' not in item
            real = int(item['masks'][32 * chunk:32 * chunk + 32].sum())
            assert decoded[-1] == real and real > 0  # only that chunk's frames
            if prefix.name == 'frames':
                first = item['frame_offset'] + 32 * chunk
                assert files[-real:] == list(range(first, first + real))  # only those files
        assert len(decoded) == len(ds)  # one read per item
        assert len(files) == (sum(decoded) if prefix.name == 'frames' else 0)


def test_fresh_chunks_look_like_the_same_chunks_of_the_whole_window(synthetic, tmp_path):
    fresh = fresh_dataset(synthetic, photometric=True)
    whole = VideoDataset(synthetic / 'annotations.json', synthetic / 'videos', subset='training',
                         window_size=96, pipeline_cfg=dict(short_side=64, crop_size=48,
                                                           min_coverage=1e-6, photometric=True))
    fresh.attach_bank(fill_bank(tmp_path / 'bank', fresh))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    for seed in range(3):
        fresh.set_epoch_seed(seed), whole.set_epoch_seed(seed)
        for index in range(len(fresh)):
            a, b = fresh[index], whole[index]
            assert a['frame_offset'] == b['frame_offset']
            assert torch.equal(a['gt_segments'], b['gt_segments'])
            for k, c in enumerate(a['fresh_chunks'].tolist()):
                window_part = b['imgs'][:, 32 * c:32 * c + 32]
                got = (a['fresh_imgs'][k].float() - mean) / std
                got = got * a['masks'][32 * c:32 * c + 32].view(1, -1, 1, 1)
                # same crop, flip and colours; uint8 rounding of the distorted pixels only
                assert (got - window_part).abs().max() <= 0.51 / 57.0


def test_epoch_seed_repeats_items_whatever_the_workers(synthetic, tmp_path):
    ds = fresh_dataset(synthetic, keep_ratio=0.5)
    ds.attach_bank(fill_bank(tmp_path / 'bank', ds))

    def draw(seed, workers):
        ds.set_epoch_seed(seed)
        loader = DataLoader(ds, batch_size=2, num_workers=workers,
                            collate_fn=collate_video_windows)
        return [(b['frame_offsets'].tolist(), b['fresh_index'].tolist(), b['fresh_imgs'])
                for b in loader]

    a, b, other = draw(3, 0), draw(3, 2), draw(4, 0)
    assert len(a) == 2
    for x, y in zip(a, b):  # the bank reopens itself in each worker
        assert x[0] == y[0] and x[1] == y[1] and torch.equal(x[2], y[2])
    assert any(x[:2] != y[:2] or not torch.equal(x[2], y[2]) for x, y in zip(a, other))


def test_fresh_batch_carries_the_stale_chunks_from_the_bank(synthetic, tmp_path):
    ds = fresh_dataset(synthetic, keep_ratio=0.34)
    bank = fill_bank(tmp_path / 'bank', ds)
    bank.write_chunks(ds.videos[0].video_id, [0, 1, 2, 3], np.full((4, 16, FEAT), 5.0), step=9)
    ds.attach_bank(bank)
    ds.set_epoch_seed(1)
    batch = collate_video_windows([ds[i] for i in range(len(ds))])
    assert batch['bank_feats'].shape == (4, 3, 16, FEAT)
    assert batch['bank_feats'].dtype == torch.float16 and batch['fresh_imgs'].dtype == torch.uint8
    assert batch['pixel_mean'].tolist() == pytest.approx(list(IMAGENET_MEAN))
    for b in range(4):
        first = int(batch['frame_offsets'][b]) // 32
        fresh = batch['fresh_chunks'][b].tolist()
        assert [int(i) - 3 * b for i in batch['fresh_index'] if int(i) // 3 == b] == fresh
        for c in range(3):
            got = batch['bank_feats'][b, c]
            real = int(batch['masks'][b, 32 * c:32 * c + 32].sum())
            if c in fresh or real == 0:
                assert torch.all(got == 0) and batch['bank_steps'][b, c] == -1
            else:
                want = 5.0 if b == 0 else 100.0 * b + first + c + 1
                assert torch.all(got[:(real + 1) // 2] == want)
                assert batch['bank_steps'][b, c] == (9 if b == 0 else -1)


def _overwrite_slot(shard, chunk, payload):
    """Replace a chunk's stored bytes in a bank shard and give them a valid crc32c."""
    import google_crc32c
    offset = int(np.fromfile(shard, '<u8', count=2, offset=16 * chunk)[0])
    with open(shard, 'r+b') as f:
        f.seek(offset)
        f.write(payload + google_crc32c.value(payload).to_bytes(4, 'little'))


def _forget_chunk(shard, chunk):
    """Point a chunk's shard index entry at nothing, as if it had never been written."""
    with open(shard, 'r+b') as f:
        f.seek(16 * chunk)
        f.write(np.array([2**64 - 1, 2**64 - 1], '<u8').tobytes())


def test_invalid_bank_data_is_refused_naming_video_and_chunk(synthetic, tmp_path):
    import zarr

    from vedatad.data.bank_windows import BankDataError
    ds = fresh_dataset(synthetic, keep_ratio=0.0)  # one fresh chunk: two stale ones read
    with pytest.raises(RuntimeError, match='attach_bank'):
        ds[0]

    def first_item_error(bank):
        ds.attach_bank(bank)
        ds.set_epoch_seed(0)
        with pytest.raises(BankDataError) as err:
            for index in range(len(ds)):
                ds[index]
        return str(err.value)

    vid = ds.videos[0].video_id
    assert 'incomplete' in first_item_error(fill_bank(tmp_path / 'a', ds, complete=False))
    msg = first_item_error(fill_bank(tmp_path / 'b', ds, frames=240))
    assert vid in msg and '240 frames in the memory bank but 120 in the dataset' in msg
    from vedatad.membank import MemoryBank
    empty = MemoryBank.create(tmp_path / 'c', feat_dim=FEAT, backbone='test')
    assert 'not in the memory bank' in first_item_error(empty)

    ds.set_epoch_seed(0)
    bank = fill_bank(tmp_path / 'd', ds)
    ds.attach_bank(bank)
    item = ds[0]  # the same draws again below: the epoch seed fixes them
    stale = [c for c in range(3) if c not in item['fresh_chunks'].tolist()
             and item['masks'][32 * c]]
    chunk = item['frame_offset'] // 32 + stale[0]
    shard = tmp_path / 'd' / 'feats' / vid / 'c' / '0' / '0'
    # NaN that passes the checksum (a bank written by another tool): refused when read
    _overwrite_slot(shard, chunk, np.full((16, FEAT), np.nan, np.float16).tobytes())
    ds.attach_bank(MemoryBank.open(tmp_path / 'd'))
    with pytest.raises(BankDataError, match=f"{vid}'?, chunk {chunk}: .*not finite.*re-extract"):
        ds[0]
    _forget_chunk(shard, chunk)  # an index entry that was never written reads as zeros
    ds.attach_bank(MemoryBank.open(tmp_path / 'd'))
    with pytest.raises(BankDataError, match=f"{vid}'?, chunk {chunk}: no stored features"):
        ds[0]

    bank = fill_bank(tmp_path / 'e', ds)
    group = zarr.open_group(str(tmp_path / 'e'), mode='r+')
    group.attrs.update(settings=dict(fps=30.0))
    assert 'extracted at 30 fps' in first_item_error(MemoryBank.open(tmp_path / 'e'))
