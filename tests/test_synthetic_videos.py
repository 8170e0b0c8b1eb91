"""Synthetic demo videos: real decodable mp4s, deterministic, classes visibly distinct."""
import importlib.util
import json

import numpy as np
import pytest

from vedatad.data.annotations import build_label_map, load_annotations
from vedatad.data.synthetic_videos import class_style, make_synthetic_videos, render_video
from vedatad.data.video_readers import open_video


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    data = make_synthetic_videos(out, num_videos=6, seconds=8, size=64, num_classes=3, seed=1)
    return out, data


def colour_fraction(frames, colour, tol=40):
    """Per frame, the fraction of pixels within ``tol`` (every channel) of ``colour``."""
    close = np.abs(frames.astype(int) - np.asarray(colour)).max(axis=-1) < tol
    return close.mean(axis=(1, 2))


def test_files_and_annotations(synthetic):
    out, data = synthetic
    videos = load_annotations(out / 'annotations.json')
    assert len(videos) == 6
    assert [v.subset for v in videos.values()] == ['training'] * 4 + ['validation'] * 2
    assert build_label_map(videos.values()) == {class_style(k)[0]: k for k in range(3)}
    for video_id, video in videos.items():
        reader = open_video(out / 'videos' / f'{video_id}.mp4')
        assert (reader.num_frames, reader.fps, reader.height, reader.width) == (120, 15, 64, 64)
        assert video.duration == pytest.approx(8.0)
        assert 1 <= len(video.segments) and all(0 <= s.start < s.end <= 8 for s in video.segments)
        ends = [(s.start, s.end) for s in video.segments]
        assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:]))  # no overlap
    labels = {s.label for v in videos.values() for s in v.segments}
    assert len(labels) == 3  # every class appears


def test_actions_visible_exactly_during_segments(synthetic):
    out, data = synthetic
    for video_id, entry in data['database'].items():
        frames = open_video(out / 'videos' / f'{video_id}.mp4').read(np.arange(120))
        for k in range(3):
            present = colour_fraction(frames, class_style(k)[1]) > 0.02
            expected = np.zeros(120, bool)
            for ann in entry['annotations']:
                if ann['label_id'] == k:
                    f0, f1 = (round(t * 15) for t in ann['segment'])
                    expected[f0:f1] = True
            assert np.array_equal(present, expected), (video_id, k)


def test_deterministic_per_seed(tmp_path, synthetic):
    _, data = synthetic
    again = make_synthetic_videos(tmp_path, num_videos=6, seconds=8, size=64, num_classes=3,
                                  seed=1, workers=2)
    assert again == data
    a, seg_a = render_video(2, 1, 8, 64, 3, 15)
    b, seg_b = render_video(2, 1, 8, 64, 3, 15)
    c, _ = render_video(2, 2, 8, 64, 3, 15)
    assert np.array_equal(a, b) and seg_a == seg_b and not np.array_equal(a, c)
    assert a.shape == (120, 64, 64, 3) and a.dtype == np.uint8
    assert np.abs(np.diff(a[:, :, :, 0].astype(int), axis=0)).mean() > 1  # background moves


def test_class_styles_differ_in_colour_shape_and_motion():
    styles = [class_style(k) for k in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert styles[i][1] != styles[j][1] and styles[i][2] != styles[j][2]
            assert styles[i][3] != styles[j][3]


def test_tool(repo_root, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'make_synthetic_videos', repo_root / 'tools/data/make_synthetic_videos.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main([str(tmp_path), '--num-videos', '3', '--seconds', '3', '--size', '32',
               '--classes', '2', '--seed', '5'])
    assert '3 videos' in capsys.readouterr().out
    data = json.loads((tmp_path / 'annotations.json').read_text())
    assert sorted(data['database']) == ['synthetic_0000', 'synthetic_0001', 'synthetic_0002']
    assert open_video(tmp_path / 'videos' / 'synthetic_0002.mp4').num_frames == 45
