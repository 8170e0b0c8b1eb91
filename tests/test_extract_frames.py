"""Frame extraction and re-encoding tools: output, resume, failures reported by name."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from vedatad.data.ffmpeg import (META_FILE, FFmpegError, extract_frames, ffmpeg_version,
                                 find_ffmpeg, probe_video, shared_frame_settings)
from vedatad.data.video_readers import open_video


def load_tool(repo_root, rel):
    spec = importlib.util.spec_from_file_location(rel.replace('/', '_'), repo_root / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def video_dir(video_fixture_dir, tmp_path):
    """Two good videos and one that no decoder can read."""
    folder = tmp_path / 'videos'
    folder.mkdir()
    for name in ('mmaction2_part0_30fps_1s.mp4', 'moviepy_no_duration_vp9.webm'):
        os.symlink(video_fixture_dir / name, folder / name)
    (folder / 'broken.mp4').write_bytes(b'this is not a video' * 50)
    return folder


def test_extract_frames_fps_size_and_marker(video_fixture_dir, tmp_path):
    out = tmp_path / 'fire2'
    meta = extract_frames(video_fixture_dir / 'moviepy_fire2_phone_vfr_aac.mp4', out,
                          fps=15, size=(64, 48))
    files = sorted(p.name for p in out.glob('*.jpg'))
    # 2.38 s at 15 fps (the ~10.5 fps source is upsampled by duplicating frames)
    assert len(files) == meta['num_frames'] and 34 <= len(files) <= 37
    assert files[0] == '00001.jpg' and meta['fps'] == 15.0
    assert meta['source']['fps'] == pytest.approx(10.505, abs=1e-3)
    assert Image.open(out / files[-1]).size == (64, 48)
    saved = json.loads((out / META_FILE).read_text())
    assert saved['num_frames'] == len(files)
    assert saved['frame_settings'] == dict(
        fps=15.0, size=[64, 48], short_side=None, pattern='%05d.jpg', quality=2,
        ffmpeg_args=None, ffmpeg_version=ffmpeg_version(find_ffmpeg()))
    assert re.fullmatch(r'\S+', saved['frame_settings']['ffmpeg_version'])  # the version only


def test_short_side_keeps_aspect_and_rotation(video_fixture_dir, tmp_path):
    meta = extract_frames(video_fixture_dir / 'decord_video90_portrait.mov', tmp_path / 'p',
                          short_side=64, fmt='png')
    assert (meta['width'], meta['height']) == (64, 114)  # displayed 320x568, portrait
    assert meta['fps'] == 30.0 and meta['num_frames'] == 3
    assert (tmp_path / 'p' / '00003.png').is_file()
    settings = meta['frame_settings']
    assert (settings['fps'], settings['short_side'], settings['size']) == (None, 64, None)
    assert settings['pattern'] == '%05d.png' and settings['quality'] is None  # PNG: lossless


def test_tool_reports_failures_and_resumes(repo_root, video_dir, tmp_path, capsys):
    tool = load_tool(repo_root, 'tools/data/extract_frames.py')
    out = tmp_path / 'frames'
    args = [str(video_dir), str(out), '--fps', '15', '--size', '32x24', '--workers', '2',
            '--no-progress']
    assert tool.main(args) == 1
    report = capsys.readouterr().out
    assert '2 done, 0 already complete, 1 failed' in report
    assert 'FAILED broken.mp4' in report
    assert not (out / 'broken').joinpath(META_FILE).exists()
    webm = out / 'moviepy_no_duration_vp9'
    assert open_video(webm).num_frames == 74  # 4.94 s at 15 fps

    # interrupt one video: marker gone, a frame missing, a stray file left behind
    part0 = out / 'mmaction2_part0_30fps_1s'
    (part0 / META_FILE).unlink()
    (part0 / '00003.jpg').unlink()
    (part0 / 'junk.jpg').write_bytes(b'x')
    webm_mtime = (webm / '00001.jpg').stat().st_mtime_ns
    (video_dir / 'broken.mp4').unlink()
    assert tool.main(args[:-3] + ['--workers', '1', '--no-progress']) == 0
    report = capsys.readouterr().out
    assert '1 done, 1 already complete, 0 failed' in report
    assert (webm / '00001.jpg').stat().st_mtime_ns == webm_mtime  # skipped, not redone
    assert not (part0 / 'junk.jpg').exists() and (part0 / '00003.jpg').is_file()
    assert open_video(part0).num_frames == json.loads((part0 / META_FILE).read_text())['num_frames']


def test_extract_frames_error_names_the_video(tmp_path):
    bad = tmp_path / 'bad.avi'
    bad.write_bytes(b'RIFF' + b'\x00' * 64)
    with pytest.raises(FFmpegError, match='bad.avi'):
        extract_frames(bad, tmp_path / 'bad')


def test_shell_wrapper_passes_raw_ffmpeg_options(repo_root, video_fixture_dir, tmp_path):
    videos = tmp_path / 'in'
    videos.mkdir()
    os.symlink(video_fixture_dir / 'decord_video90_portrait.mov', videos / 'clip.mov')
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(['bash', str(repo_root / 'tools/data/extract_frames.sh'), str(videos),
                           str(tmp_path / 'out'), '-vf scale=20:36', 'img_%04d.png'],
                          env=env, capture_output=True, text=True, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / 'out' / 'clip'
    assert sorted(p.name for p in folder.glob('*.png')) == ['img_0001.png', 'img_0002.png',
                                                           'img_0003.png']
    reader = open_video(folder, fps=30)
    assert reader.read([2]).shape == (1, 36, 20, 3)
    settings = json.loads((folder / META_FILE).read_text())['frame_settings']
    assert settings['ffmpeg_args'] == ['-vf', 'scale=20:36'] and settings['fps'] is None
    assert settings['pattern'] == 'img_%04d.png'
    assert shared_frame_settings([folder]) == (
        None, f'{folder} was made with raw ffmpeg options (-vf scale=20:36)')


SETTINGS = dict(fps=15.0, size=None, short_side=128, pattern='%05d.jpg', quality=2,
                ffmpeg_args=None, ffmpeg_version='6.1')


def _frame_folder(path, settings=None):
    """A frame folder's meta.json alone; ``settings`` None: written before frame settings."""
    path.mkdir(parents=True)
    meta = dict(num_frames=3, fps=15.0, pattern='%05d.jpg')
    if settings is not None:
        meta['frame_settings'] = settings
    (path / META_FILE).write_text(json.dumps(meta))
    return path


def test_shared_frame_settings_need_every_folder_to_agree(tmp_path):
    a = _frame_folder(tmp_path / 'a', SETTINGS)
    b = _frame_folder(tmp_path / 'b', dict(SETTINGS, ffmpeg_version='7.0'))
    settings, why = shared_frame_settings([a, b])
    assert why is None and settings == dict(SETTINGS, ffmpeg_version=['6.1', '7.0'])

    other = _frame_folder(tmp_path / 'other', dict(SETTINGS, quality=5))
    assert shared_frame_settings([a, other]) == (
        None, f'frame folders {a} and {other} were extracted with other settings (quality 2 '
              'vs 5)')
    old = _frame_folder(tmp_path / 'old')
    assert shared_frame_settings([a, old]) == (
        None, f'{old / META_FILE} does not record the frame settings (written by an older '
              'extract_frames)')
    partial = _frame_folder(tmp_path / 'partial', {k: v for k, v in SETTINGS.items()
                                                   if k != 'quality'})
    assert shared_frame_settings([partial])[1].endswith('does not record quality in '
                                                        'frame_settings')
    (tmp_path / 'hand made').mkdir()
    assert 'does not exist (the folder was not made by extract_frames)' in \
        shared_frame_settings([tmp_path / 'hand made'])[1]


def test_transform_videos_caps_frames_and_resumes(repo_root, video_fixture_dir, tmp_path,
                                                  capsys):
    tool = load_tool(repo_root, 'tools/data/anet/transform_videos.py')
    src = tmp_path / 'raw'
    src.mkdir()
    for name in ('mmaction2_demo_28fps.mp4', 'decord_video90_portrait.mov'):
        os.symlink(video_fixture_dir / name, src / name)
    args = ['--video_dir', str(src), '--output_dir', str(tmp_path / 'out'),
            '--resolution', '64x48', '--max-frames', '24', '--workers', '2', '--no-progress']
    assert tool.main(args) == 0
    long = probe_video(tmp_path / 'out' / 'mmaction2_demo_28fps.mp4')
    assert long.num_frames <= 24 and long.num_frames >= 23
    assert long.fps == pytest.approx(2.4, rel=0.05)  # 10 s squeezed into 24 frames
    assert (long.width, long.height) == (64, 48)
    short = probe_video(tmp_path / 'out' / 'decord_video90_portrait.mp4')
    assert short.num_frames == 3 and short.fps == pytest.approx(30)  # short video untouched
    assert tool.main(args) == 0
    assert '0 done, 2 already complete' in capsys.readouterr().out


# ----- broken videos: built here from fixture copies --------------------------------------
@pytest.fixture
def broken_videos(video_fixture_dir, tmp_path):
    """good.mp4, garbled.mp4 (bytes overwritten in the middle), truncated.mp4 (the second
    half cut off a copy whose index is at the start), audio_only.m4a, cut.avi (halved)."""
    from vedatad.data.ffmpeg import find_ffmpeg
    folder = tmp_path / 'broken'
    folder.mkdir()
    src = video_fixture_dir / 'mmaction2_demo_28fps.mp4'  # 280 frames, 28 fps, 10 s
    (folder / 'good.mp4').write_bytes(src.read_bytes())
    data = bytearray(src.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 20000, 7):
        data[i] ^= 0x5A
    (folder / 'garbled.mp4').write_bytes(bytes(data))
    exe = find_ffmpeg()
    fast = tmp_path / 'faststart.mp4'
    subprocess.run([exe, '-hide_banner', '-loglevel', 'error', '-i', str(src), '-c', 'copy',
                    '-movflags', '+faststart', str(fast)], check=True)
    whole = fast.read_bytes()
    (folder / 'truncated.mp4').write_bytes(whole[:len(whole) // 2])
    subprocess.run([exe, '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i',
                    'sine=frequency=440:duration=2', '-c:a', 'aac',
                    str(folder / 'audio_only.m4a')], check=True)
    avi = (video_fixture_dir / 'mmaction2_test_xvid_mp3.avi').read_bytes()
    (folder / 'cut.avi').write_bytes(avi[:len(avi) // 2])
    return folder


def test_garbled_video_fails_with_its_decode_errors(broken_videos, tmp_path):
    with pytest.raises(FFmpegError) as err:
        extract_frames(broken_videos / 'garbled.mp4', tmp_path / 'g', fps=15, size=(32, 24))
    msg = str(err.value)
    assert 'garbled.mp4' in msg and 'decode errors (first: [h264' in msg
    assert 'Not marked complete' in msg
    assert not (tmp_path / 'g' / META_FILE).exists()
    # accepted when asked for, with the counts on record
    meta = extract_frames(broken_videos / 'garbled.mp4', tmp_path / 'g', fps=15, size=(32, 24),
                          max_decode_errors=1000)
    assert meta['decode_errors'] > 0 and meta['decode_error_sample'][0].startswith('[h264')
    assert meta['expected_frames'] == 150


def test_truncated_video_fails_with_its_frame_shortfall(broken_videos, tmp_path):
    info = probe_video(broken_videos / 'truncated.mp4')
    assert info.truncated and info.container_duration == pytest.approx(10.0)
    assert info.expected_frames() == 280 and info.expected_frames(15) == 150
    assert info.num_frames < 150  # packets present in the file
    with pytest.raises(FFmpegError) as err:
        extract_frames(broken_videos / 'truncated.mp4', tmp_path / 't', size=(32, 24),
                       max_decode_errors=100)
    msg = str(err.value)
    assert 'of 280 expected frames decoded' in msg and '(the file is truncated)' in msg
    good = probe_video(broken_videos / 'good.mp4')
    assert not good.truncated and good.expected_frames() == 280


def test_audio_only_file_says_it_has_no_video_stream(broken_videos, tmp_path):
    with pytest.raises(FFmpegError) as err:
        extract_frames(broken_videos / 'audio_only.m4a', tmp_path / 'a')
    msg = str(err.value)
    assert 'audio_only.m4a: has no video stream' in msg and 'audio (aac)' in msg


def test_tool_summary_lists_every_video_with_counts(repo_root, broken_videos, tmp_path,
                                                    capsys):
    tool = load_tool(repo_root, 'tools/data/extract_frames.py')
    (broken_videos / 'audio_only.mp4').write_bytes((broken_videos / 'audio_only.m4a')
                                                   .read_bytes())  # listed as a video
    args = [str(broken_videos), str(tmp_path / 'frames'), '--fps', '15', '--size', '32x24',
            '--no-progress']
    assert tool.main(args) == 1
    report = capsys.readouterr().out
    lines = report.splitlines()
    assert lines[0] == '1 done, 0 already complete, 4 failed, 0 with warnings'
    assert 'ok good.mp4: 150 frames (150 expected)' in lines
    assert any(l.startswith('FAILED garbled.mp4:') and 'decode errors' in l for l in lines)
    assert any(l.startswith('FAILED truncated.mp4:') and 'expected frames decoded' in l
               for l in lines)
    assert any(l.startswith('FAILED cut.avi:') and 'decode errors' in l for l in lines)
    assert any(l.startswith('FAILED audio_only.mp4:') and 'no video stream' in l
               for l in lines)
    # a threshold high enough accepts the garbled file, reported as a warning with counts
    assert tool.main(args + ['--max-decode-errors', '1000']) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '2 done, 1 already complete, 2 failed, 2 with warnings', lines
    assert 'ok good.mp4 (done earlier): 150 frames (150 expected)' in lines
    assert any(l.startswith('WARN garbled.mp4: ') and 'decode errors (first: [h264' in l
               for l in lines)
    assert any(l.startswith('WARN cut.avi: ') and 'decode errors (first: [mpeg4' in l
               for l in lines)
    assert any(l.startswith('FAILED truncated.mp4:') and 'expected frames decoded' in l
               for l in lines)  # missing frames still fail


def test_videos_sharing_a_name_are_refused(tmp_path, video_fixture_dir):
    from vedatad.data.video_jobs import list_videos
    (tmp_path / 'a.mp4').write_bytes(b'x')
    (tmp_path / 'a.avi').write_bytes(b'x')
    with pytest.raises(ValueError, match='a.avi and a.mp4'):
        list_videos(tmp_path)
