"""Temporal windows on the chunk grid, spatial transforms, formatting."""
import numpy as np
import pytest
import torch

from vedatad.data.transforms import (CenterCrop, Compose, FixedWindow, FormatFreshChunks,
                                     FormatWindow, FormatWindows, Normalize,
                                     PhotoMetricDistortion, RandomCrop, RandomFlip, Resize,
                                     SelectFreshChunks, SlidingWindows, TemporalRandomCrop,
                                     chunk_grid_starts, crop_segments, segment_coverage)
from vedatad.registry import TRANSFORMS


def video(t=8, h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def state(num_frames, segments=(), labels=None, seed=0):
    segments = np.asarray(segments, np.float32).reshape(-1, 2)
    labels = np.arange(len(segments)) if labels is None else np.asarray(labels)
    return dict(video_id='v', num_frames=num_frames, gt_segments=segments, gt_labels=labels,
                rng=np.random.default_rng(seed))


def test_chunk_grid_starts_cover_every_frame():
    starts = chunk_grid_starts(1000, 256, 32)
    assert (starts % 32 == 0).all() and starts[0] == 0
    assert starts[-1] + 256 >= 1000 and starts[-2] + 256 < 1000
    assert list(chunk_grid_starts(100, 256, 32)) == [0]


def test_crop_segments_coverage_clip_and_relative_units():
    # window [32, 96): segment [10, 50] is 45% inside, [40, 60] fully, [90, 130] 15%
    res = crop_segments(state(200, [[10, 50], [40, 60], [90, 130]]), 32, 64, 0.4)
    assert res['gt_segments'].tolist() == [[0, 18], [8, 28]]
    assert res['gt_labels'].tolist() == [0, 1]
    assert res['frame_offset'] == 32 and res['frame_inds'].tolist() == list(range(32, 96))
    res = crop_segments(state(200, [[10, 50], [40, 60]]), 32, 64, 0.75)
    assert res['gt_segments'].tolist() == [[8, 28]]
    # the window runs past the end of a 70-frame video: only real frames are decoded
    res = crop_segments(state(70, [[60, 80]]), 32, 64, 0.3)
    assert res['frame_inds'].tolist() == list(range(32, 70))
    assert res['gt_segments'].tolist() == [[28, 38]]  # clipped to the last real frame


def test_temporal_random_crop_grid_and_coverage():
    crop = TemporalRandomCrop(window_size=128, chunk_size=32, min_coverage=0.75)
    segments = [[50, 90], [400, 470], [700, 720]]
    offsets = set()
    for seed in range(60):
        res = crop(state(900, segments, seed=seed))
        offset = res['frame_offset']
        offsets.add(offset)
        assert offset % 32 == 0 and 0 <= offset <= 900 - 128 + 31
        assert len(res['gt_segments']) >= 1  # a window with an action is always found
        seg = res['gt_segments']
        assert (seg >= 0).all() and (seg <= 128).all() and (seg[:, 0] <= seg[:, 1]).all()
        cov = segment_coverage(np.asarray(segments), [offset], [offset + 128])[0]
        assert len(seg) == (cov >= 0.75).sum()
    assert len(offsets) > 5  # random, not a fixed window


def test_temporal_random_crop_short_video_and_no_actions():
    crop = TemporalRandomCrop(window_size=96)
    res = crop(state(40, [[5, 20]]))
    assert res['frame_offset'] == 0 and len(res['frame_inds']) == 40
    res = crop(state(500))
    assert res['frame_offset'] % 32 == 0 and len(res['gt_segments']) == 0
    with pytest.raises(ValueError, match='multiple of chunk_size'):
        TemporalRandomCrop(window_size=100)
    with pytest.raises(ValueError, match='not on the 32-frame grid'):
        FixedWindow(64)(dict(state(100), frame_offset=10))


def test_sliding_windows_overlap_and_coverage():
    sw = SlidingWindows(window_size=128, overlap=0.25, chunk_size=32)
    assert sw.stride == 96
    offsets = sw.offsets(1000)
    assert (offsets % 32 == 0).all() and (np.diff(offsets) == 96).all()
    assert offsets[-1] + 128 >= 1000 and offsets[-2] + 128 < 1000
    assert sw.offsets(50).tolist() == [0]
    assert SlidingWindows(64, overlap=0.9).stride == 32  # never below one chunk


def test_resize_and_crops_share_one_position():
    imgs = video(t=4, h=40, w=60)
    res = Resize(short_side=20)(dict(imgs=imgs))
    assert res['imgs'].shape == (4, 20, 30, 3) and res['imgs'].dtype == np.uint8
    flat = np.full((2, 40, 60, 3), 77, np.uint8)
    assert (Resize(size=(10, 16))(dict(imgs=flat))['imgs'] == 77).all()
    res = RandomCrop(16)(dict(imgs=imgs, rng=np.random.default_rng(3)))
    out = res['imgs']
    assert out.shape == (4, 16, 16, 3)
    # locate the crop in frame 0 and check every frame was cut at the same place
    hits = [(y, x) for y in range(25) for x in range(45)
            if np.array_equal(imgs[0, y:y + 16, x:x + 16], out[0])]
    y, x = hits[0]
    assert np.array_equal(imgs[:, y:y + 16, x:x + 16], out)
    centre = CenterCrop((20, 30))(dict(imgs=imgs))['imgs']
    assert np.array_equal(centre, imgs[:, 10:30, 15:45])
    with pytest.raises(ValueError, match='smaller than the crop'):
        RandomCrop(50)(dict(imgs=imgs, video_id='v1'))


def test_flip_mirrors_every_frame():
    imgs = video()
    flips = [RandomFlip(0.5)(dict(imgs=imgs, rng=np.random.default_rng(s))) for s in range(20)]
    flipped = [r for r in flips if r['flipped']]
    assert 0 < len(flipped) < 20
    assert np.array_equal(flipped[0]['imgs'], imgs[:, :, ::-1])
    kept = next(r for r in flips if not r['flipped'])
    assert np.array_equal(kept['imgs'], imgs)


def test_photometric_distortion_consistent_in_time():
    frame = video(t=1)[0]
    imgs = np.stack([frame, frame, frame])
    res = PhotoMetricDistortion(p=1.0)(dict(imgs=imgs, rng=np.random.default_rng(1)))
    out = res['imgs']
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
    assert np.allclose(out[0], out[2]) and not np.allclose(out[0], frame)
    same = PhotoMetricDistortion(p=0.0)(dict(imgs=imgs, rng=np.random.default_rng(1)))
    assert np.array_equal(same['imgs'], imgs.astype(np.float32))
    gray = np.full((1, 4, 4, 3), 100, np.uint8)  # hue rotation leaves gray untouched
    hue_only = PhotoMetricDistortion(brightness_delta=0, contrast_range=(1, 1),
                                     saturation_range=(1, 1), hue_delta=90, p=1.0)
    assert np.allclose(hue_only(dict(imgs=gray, rng=np.random.default_rng(0)))['imgs'], 100,
                       atol=1e-3)
    red = np.zeros((1, 1, 1, 3), np.uint8)
    red[..., 0] = 200
    shifted = hue_only(dict(imgs=red, rng=np.random.default_rng(0)))['imgs']
    assert not np.allclose(shifted, red)  # a coloured pixel does change hue


def test_normalize_and_format_window_padding():
    imgs = video(t=5, h=4, w=6)
    res = Normalize(mean=(10, 20, 30), std=(2, 4, 5))(dict(imgs=imgs))
    expected = (imgs.astype(np.float32) - [10, 20, 30]) / [2, 4, 5]
    assert np.allclose(res['imgs'], expected)
    res.update(window_size=8, gt_segments=np.array([[1, 3]], np.float32),
               gt_labels=np.array([2]))
    out = FormatWindow()(res)
    assert out['imgs'].shape == (3, 8, 4, 6) and out['imgs'].dtype == torch.float32
    assert out['masks'].tolist() == [True] * 5 + [False] * 3
    assert torch.equal(out['imgs'][:, 5:], torch.zeros(3, 3, 4, 6))
    assert torch.allclose(out['imgs'][:, 2], torch.from_numpy(expected[2]).float().permute(2, 0, 1))
    assert out['gt_labels'].dtype == torch.long and out['gt_segments'].shape == (1, 2)


def test_format_windows_views_match_frames():
    num = 150
    imgs = np.arange(num, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 3, 3))
    res = SlidingWindows(64, overlap=0.5)(dict(num_frames=num))
    res['imgs'] = imgs
    out = FormatWindows()(res)
    offsets = out['frame_offsets']
    assert offsets.tolist() == [0, 32, 64, 96]
    assert out['imgs'].shape == (4, 3, 64, 2, 3)
    for i, off in enumerate(offsets.tolist()):
        time_values = out['imgs'][i, 0, :, 0, 0]
        valid = out['masks'][i]
        assert valid.sum() == min(64, num - off)
        assert torch.equal(time_values[valid], torch.arange(off, off + int(valid.sum())).float())
        assert (time_values[~valid] == 0).all()


def test_registry_and_compose():
    pipe = Compose([dict(type='TemporalRandomCrop', window_size=64),
                    dict(type='Normalize'), ])
    assert 'TemporalRandomCrop' in repr(pipe)
    assert TRANSFORMS.get('PhotoMetricDistortion') is PhotoMetricDistortion
    res = pipe(dict(state(100, [[10, 40]]), imgs=video(t=1)))
    assert res['frame_offset'] in (0, 32, 64) and res['imgs'].dtype == np.float32


def test_select_fresh_chunks_sets_only_their_frames():
    select = SelectFreshChunks(keep_ratio=0.25, sampling='uniform_jitter')
    for seed in range(20):
        res = select(crop_segments(state(200, seed=seed), 128, 128, 0.5))  # frames 128..199
        fresh = res['fresh_chunks']
        assert res['num_window_chunks'] == 4 and len(fresh) == 1
        assert fresh.max() < 3  # chunk 3 (frames 224..255) is past the video end
        frames = res['frame_inds']
        want = np.arange(128 + 32 * fresh[0], min(128 + 32 * fresh[0] + 32, 200))
        assert frames.tolist() == want.tolist()
    res = SelectFreshChunks(keep_ratio=0.5)(crop_segments(state(500), 64, 256, 0.5))
    assert len(res['fresh_chunks']) == 4 and len(res['frame_inds']) == 128
    with pytest.raises(ValueError, match='chunk grid'):
        SelectFreshChunks(0.5)(dict(state(100), frame_offset=16, window_size=64))
    with pytest.raises(ValueError, match='sampling'):
        SelectFreshChunks(0.5, sampling='all')


def test_select_fresh_chunks_leaves_the_spatial_draws_alone():
    crop = TemporalRandomCrop(window_size=128)
    a = crop(state(400, [[10, 300]], seed=4))
    b = SelectFreshChunks(0.5)(crop(state(400, [[10, 300]], seed=4)))
    assert a['frame_offset'] == b['frame_offset']
    assert a['rng'].random() == b['rng'].random()  # the next draw (a crop) is the same


def test_format_fresh_chunks_pads_the_last_chunk():
    res = SelectFreshChunks(keep_ratio=1.0)(crop_segments(state(70, [[5, 20]]), 0, 96, 0.5))
    assert res['fresh_chunks'].tolist() == [0, 1, 2] and len(res['frame_inds']) == 70
    res['imgs'] = video(t=70, h=4, w=6)
    out = FormatFreshChunks()(res)
    imgs = out['fresh_imgs']
    assert imgs.shape == (3, 3, 32, 4, 6) and imgs.dtype == torch.uint8
    flat = imgs.permute(0, 2, 3, 4, 1).reshape(96, 4, 6, 3)
    assert torch.equal(flat[:70], torch.from_numpy(res['imgs']))
    assert torch.all(flat[70:] == 0)
    assert out['masks'].tolist() == [True] * 70 + [False] * 26
    res['imgs'] = res['imgs'].astype(np.float32)
    with pytest.raises(ValueError, match='uint8'):
        FormatFreshChunks()(res)


def test_uint8_photometric_and_device_normalisation():
    imgs = video(t=3)
    as_float = PhotoMetricDistortion(p=1.0)(dict(imgs=imgs, rng=np.random.default_rng(2)))
    as_uint8 = PhotoMetricDistortion(p=1.0, out_dtype='uint8')(
        dict(imgs=imgs, rng=np.random.default_rng(2)))
    assert as_uint8['imgs'].dtype == np.uint8
    assert np.abs(as_uint8['imgs'] - as_float['imgs']).max() <= 0.5 + 1e-4
    res = Normalize(mean=(1, 2, 3), std=(4, 5, 6), on_device=True)(dict(as_uint8))
    assert res['imgs'] is as_uint8['imgs'] and res['pixel_std'].tolist() == [4, 5, 6]
    with pytest.raises(ValueError, match="out_dtype='uint8'"):
        Normalize(on_device=True)(dict(as_float))
