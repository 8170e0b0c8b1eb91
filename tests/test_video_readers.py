"""Every fixture video is read (or refused with an error naming it) by the readers."""
import shutil

import numpy as np
import pytest

from vedatad.data.ffmpeg import extract_frames, probe_video
from vedatad.data.video_readers import (DecordReader, FFmpegReader, FrameFolderReader,
                                        ResampledReader, VideoReadError, open_video)

# name: (frames, average fps, displayed height, width, reader chosen by open_video)
FIXTURES = {
    'mmaction2_demo_28fps.mp4': (280, 28.0, 256, 340, DecordReader),
    'mmaction2_part0_30fps_1s.mp4': (32, 30.0, 256, 340, DecordReader),
    'mmaction2_structuralize_2997fps.mp4': (300, 30000 / 1001, 240, 426, DecordReader),
    'mmaction2_test_xvid_mp3.avi': (164, 25.0, 240, 320, FFmpegReader),  # no pts
    'moviepy_chaplin_25fps_mp3.mp4': (241, 25.0, 360, 640, DecordReader),
    'moviepy_fire2_phone_vfr_aac.mp4': (25, 750000 / 71393, 720, 1280, DecordReader),
    'moviepy_bbb_1s_vp8.webm': (24, 24.0, 720, 1280, DecordReader),
    'moviepy_no_duration_vp9.webm': (74, 15000 / 1001, 720, 1280, FFmpegReader),
    'decord_video90_portrait.mov': (3, 30.0, 568, 320, DecordReader),
}


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_open_video_reads_every_fixture(video_fixture_dir, name):
    frames, fps, height, width, reader_type = FIXTURES[name]
    reader = open_video(video_fixture_dir / name)
    assert type(reader) is reader_type
    assert reader.num_frames == frames
    assert reader.fps == pytest.approx(fps, rel=2e-3)  # never r_frame_rate (90000 for fire2)
    assert (reader.height, reader.width) == (height, width)
    batch = reader.read([frames - 1, 0, frames // 2, 0])
    assert batch.dtype == np.uint8 and batch.shape == (4, height, width, 3)
    assert np.array_equal(batch[1], batch[3])
    assert batch.std() > 1  # real picture content, not a blank buffer


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_probe_matches_manifest(video_fixture_dir, name):
    frames, fps, height, width, _ = FIXTURES[name]
    info = probe_video(video_fixture_dir / name)
    assert (info.num_frames, info.height, info.width) == (frames, height, width)
    assert info.fps == pytest.approx(fps, rel=2e-3)
    assert info.duration == pytest.approx(frames / info.fps)


def test_decord_refuses_no_duration_webm_with_file_name(video_fixture_dir):
    path = video_fixture_dir / 'moviepy_no_duration_vp9.webm'
    with pytest.raises(VideoReadError, match='moviepy_no_duration_vp9.webm'):
        DecordReader(path)


def test_decord_refuses_avi_without_timestamps(video_fixture_dir):
    """decord's seeking in this XviD AVI (no pts) sometimes returns a stale frame."""
    path = video_fixture_dir / 'mmaction2_test_xvid_mp3.avi'
    with pytest.raises(VideoReadError, match='mmaction2_test_xvid_mp3.avi.*timestamps'):
        DecordReader(path)
    assert DecordReader(path, check_timestamps=False).num_frames == 164  # opt-out exists


@pytest.mark.parametrize('name', ['decord_video90_portrait.mov', 'mmaction2_part0_30fps_1s.mp4',
                                  'moviepy_fire2_phone_vfr_aac.mp4'])
def test_ffmpeg_pipe_matches_decord_pixels(video_fixture_dir, name):
    """Same frames and same orientation (rotation metadata applied by both)."""
    path = video_fixture_dir / name
    dec, ff = DecordReader(path), FFmpegReader(path)
    assert (dec.num_frames, dec.height, dec.width) == (ff.num_frames, ff.height, ff.width)
    idx = [0, dec.num_frames // 2, dec.num_frames - 1]
    diff = np.abs(dec.read(idx).astype(int) - ff.read(idx).astype(int))
    assert diff.mean() < 1.0


def test_out_of_range_and_bad_files_name_the_file(video_fixture_dir, tmp_path):
    reader = open_video(video_fixture_dir / 'mmaction2_part0_30fps_1s.mp4')
    with pytest.raises(VideoReadError, match='mmaction2_part0_30fps_1s.mp4.*out of range'):
        reader.read([32])
    bad = tmp_path / 'not_a_video.mp4'
    bad.write_bytes(b'\x00\x01garbage' * 100)
    with pytest.raises(VideoReadError, match='not_a_video.mp4'):
        open_video(bad)
    with pytest.raises(VideoReadError, match='missing.mp4'):
        open_video(tmp_path / 'missing.mp4')


def test_frame_folder_reads_only_requested_files(video_fixture_dir, tmp_path):
    folder = tmp_path / 'part0'
    meta = extract_frames(video_fixture_dir / 'mmaction2_part0_30fps_1s.mp4', folder,
                          size=(64, 48))
    reader = open_video(folder)
    assert isinstance(reader, FrameFolderReader)
    assert (reader.num_frames, reader.fps, reader.height, reader.width) == (32, 30.0, 48, 64)
    (folder / (meta['pattern'] % 6)).unlink()  # frame index 5
    assert reader.read([0, 31, 4, 6]).shape == (4, 48, 64, 3)
    with pytest.raises(VideoReadError, match='00006.jpg'):
        reader.read([5])


def test_frame_folder_without_metadata_needs_fps(video_fixture_dir, tmp_path):
    folder = tmp_path / 'frames'
    extract_frames(video_fixture_dir / 'decord_video90_portrait.mov', folder, size=(32, 56))
    (folder / 'meta.json').unlink()
    with pytest.raises(VideoReadError, match='frame rate unknown'):
        open_video(folder)
    reader = open_video(folder, fps=10)
    assert reader.fps == 10 and reader.num_frames == 3
    decord_frames = DecordReader(video_fixture_dir / 'decord_video90_portrait.mov').read([1])
    # portrait orientation survives extraction: 56 high, 32 wide
    assert reader.read([1]).shape == (1, 56, 32, 3) and decord_frames.shape[1] > decord_frames.shape[2]


def test_resampled_reader_maps_times(video_fixture_dir):
    base = open_video(video_fixture_dir / 'mmaction2_demo_28fps.mp4')
    half = open_video(video_fixture_dir / 'mmaction2_demo_28fps.mp4', sample_fps=14)
    assert isinstance(half, ResampledReader)
    assert half.num_frames == 140 and half.fps == 14
    assert list(half.source_indices([0, 1, 139])) == [1, 3, 279]
    assert np.array_equal(half.read([1]), base.read([3]))


def test_unknown_backend_and_empty_read(video_fixture_dir, tmp_path):
    with pytest.raises(ValueError, match='backend'):
        open_video(video_fixture_dir / 'mmaction2_part0_30fps_1s.mp4', backend='opencv')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(VideoReadError, match='no JPEG/PNG'):
        open_video(empty)
    reader = open_video(video_fixture_dir / 'mmaction2_part0_30fps_1s.mp4', backend='ffmpeg')
    assert reader.read([]).shape == (0, 256, 340, 3)
    shutil.rmtree(empty)
