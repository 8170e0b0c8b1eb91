"""Every fixture video is read (or refused with an error naming it) by the readers."""
import shutil
import subprocess

import numpy as np
import pytest

from vedatad.data.ffmpeg import extract_frames, probe_video
from vedatad.data.video_readers import (SEEK_MARGIN, DecordReader, FFmpegReader,
                                        FrameFolderReader, ResampledReader, VideoReadError,
                                        open_video)

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


# ----- the ffmpeg reader seeks, and returns the frames of a decode from the start ----------
def full_decode(path, indices):
    """Frames ``indices`` of a plain decode of the whole file (the reference)."""
    from vedatad.data.ffmpeg import find_ffmpeg
    info = probe_video(path)
    size = info.height * info.width * 3
    cmd = [find_ffmpeg(), '-nostdin', '-loglevel', 'error', '-i', str(path), '-map', '0:V:0',
           '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']
    wanted, kept = set(indices), {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        for i in range(max(indices) + 1):
            buf = proc.stdout.read(size)
            if i in wanted:
                kept[i] = np.frombuffer(buf, np.uint8).reshape(info.height, info.width, 3)
        proc.kill()
    return np.stack([kept[i] for i in indices])


def windows(reader):
    """Windows in the middle, at the end, and just past where reads start to seek."""
    n, late = reader.num_frames, int(2 * SEEK_MARGIN * reader.fps) + 1
    return [range(n // 2, min(n, n // 2 + 9)), range(max(0, n - 6), n),
            range(min(late, n - 1), min(late + 3, n)), [n - 1, n // 2, n - 3]]


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_ffmpeg_windows_equal_a_full_decode_on_every_fixture(video_fixture_dir, name):
    path = video_fixture_dir / name
    reader = FFmpegReader(path)
    for window in windows(reader):
        assert np.array_equal(reader.read(list(window)), full_decode(path, list(window))), \
            (name, window, reader.no_seek_reason)
    if name == 'mmaction2_test_xvid_mp3.avi':  # no pts: decoded from the start, and says why
        assert reader.no_seek_reason == 'packets without presentation timestamps'
    else:
        assert reader.no_seek_reason is None


@pytest.fixture(scope='module')
def long_videos(tmp_path_factory):
    """20-second videos with a keyframe every second: the synthetic dataset's mp4, and
    containers with quirks (a start time of 3.7 s and B-frames, variable frame rate: frames
    1/15 s apart, then gaps of 1/15 and 2/15 s, MPEG-TS starting at 1.4 s)."""
    from vedatad.data.ffmpeg import find_ffmpeg, video_encoder
    from vedatad.data.synthetic_videos import make_synthetic_videos
    root = tmp_path_factory.mktemp('long videos')
    make_synthetic_videos(root, num_videos=1, seconds=20, size=32, num_classes=1, seed=2)
    exe = find_ffmpeg()
    source = ['-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=15:duration=20']
    if video_encoder(exe) == 'libx264':
        codec = ['-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '2', '-pix_fmt', 'yuv420p']
    else:
        codec = ['-c:v', 'mpeg4', '-bf', '2']
    made = {
        'start_3.7s.mp4': [*source, '-f', 'lavfi', '-i', 'sine=duration=20', *codec, '-g', '15',
                           '-c:a', 'aac', '-output_ts_offset', '3.7'],
        'vfr.mkv': ['-f', 'lavfi', '-i', 'testsrc2=size=64x48:rate=15:duration=20,'
                    "setpts='PTS+if(gt(N,100),(N-100)/30/TB,0)'", *codec, '-g', '15',
                    '-fps_mode', 'vfr'],
        'stream.ts': [*source, *codec, '-g', '15'],
    }
    for name, args in made.items():
        subprocess.run([exe, '-y', '-loglevel', 'error', *args, str(root / name)], check=True)
    return [root / 'videos' / 'synthetic_0000.mp4', *[root / name for name in made]]


def test_ffmpeg_seeks_and_equals_a_full_decode_on_long_videos(long_videos):
    for path in long_videos:
        reader = FFmpegReader(path)
        assert reader.num_frames >= 300
        for window in windows(reader) + [range(270, 290)]:
            assert np.array_equal(reader.read(list(window)), full_decode(path, list(window))), \
                (path.name, window, reader.no_seek_reason)
        assert reader.no_seek_reason is None
        # the seek happened: the last read decoded a keyframe interval and the window,
        # far fewer than the 290 frames a decode from the start needs
        assert reader.frames_decoded < 60, (path.name, reader.frames_decoded)


def test_ffmpeg_seeking_read_that_does_not_check_out_decodes_from_the_start(long_videos,
                                                                            monkeypatch):
    """A seek that lands after the first requested frame (as a demuxer without an index
    may): the frames decoded are not the expected ones, and the reader decodes from the
    start, for this read and the later ones."""
    import vedatad.data.video_readers as readers
    monkeypatch.setattr(readers, 'SEEK_MARGIN', -1.0)  # seek 1 s past the first frame
    path = long_videos[0]
    reader = FFmpegReader(path)
    window = list(range(200, 210))
    assert np.array_equal(reader.read(window), full_decode(path, window))
    assert 'decoded other frames than expected' in reader.no_seek_reason
    assert reader.frames_decoded == 210  # from the start
    assert np.array_equal(reader.read([250]), full_decode(path, [250]))
    assert reader.frames_decoded == 251
