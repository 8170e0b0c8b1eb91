"""Random-access frame readers with one interface, whatever stores the frames.

``open_video(path)`` picks the reader: a folder of JPEG/PNG frames (``FrameFolderReader``),
or a video file read with decord (``DecordReader``), falling back to an ffmpeg pipe
(``FFmpegReader``) for files decord refuses (e.g. WebM written without a duration).
Every reader returns RGB frames as uint8 arrays (T, H, W, 3), rotation metadata applied.
Errors are ``VideoReadError`` and name the file.

decord is imported here only; nothing else in vedatad depends on it.
"""
import json
import os
import re
import subprocess
import tempfile
from abc import ABC, abstractmethod
from fractions import Fraction
from pathlib import Path

import numpy as np

from .ffmpeg import META_FILE, FFmpegError, find_ffmpeg, probe_video

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')


class VideoReadError(RuntimeError):
    """A video or frame folder cannot be opened or read; the message names it."""


class VideoReader(ABC):
    """Frames of one video: ``num_frames``, ``fps`` (average), ``height``, ``width``."""

    path: str
    num_frames: int
    fps: float

    @property
    @abstractmethod
    def height(self) -> int: ...

    @property
    @abstractmethod
    def width(self) -> int: ...

    @abstractmethod
    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        """Frames at strictly increasing, in-range ``indices`` -> uint8 (T, H, W, 3)."""

    def __len__(self):
        return self.num_frames

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def read(self, indices) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) -> uint8 (T, H, W, 3)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        if indices.min() < 0 or indices.max() >= self.num_frames:
            raise VideoReadError(
                f'{self.path}: frame indices {indices.min()}..{indices.max()} out of range '
                f'(the video has {self.num_frames} frames)')
        unique, inverse = np.unique(indices, return_inverse=True)
        frames = self._read_sorted(unique)  # U, H, W, 3
        return frames[inverse.reshape(-1)]

    def __repr__(self):
        return (f'{type(self).__name__}({self.path!r}, frames={self.num_frames}, '
                f'fps={self.fps:.3f})')


class DecordReader(VideoReader):
    """Video file through decord (fast seeking; applies rotation metadata).

    Files whose frame timestamps are missing or not increasing are refused (decord's seeking
    relies on them); ``open_video`` then falls back to ``FFmpegReader``.
    """

    def __init__(self, path, num_threads=1, check_timestamps=True):
        import decord
        self.path = str(path)
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
            if check_timestamps and self.num_frames > 1:
                self._check_timestamps()
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoReadError(f'{self.path}: decord cannot open it: {_first_line(err)}') from err
        if self.num_frames <= 0 or not self.fps > 0:
            raise VideoReadError(f'{self.path}: decord reports {self.num_frames} frames at '
                                 f'{self.fps} fps')
        self._shape = None

    def _check_timestamps(self):
        """decord seeks by timestamp: without increasing timestamps (AVI packets without
        pts) ``get_batch`` sometimes returns a stale frame, so such files are refused."""
        starts = self._vr.get_frame_timestamp(list(range(self.num_frames)))[:, 0]
        if not (np.isfinite(starts).all() and starts.min() > -1e-3
                and (np.diff(starts) > 0).all()):
            raise VideoReadError(f'{self.path}: no usable frame timestamps for decord (e.g. an '
                                 'AVI without pts); its random access would return wrong frames')

    def _frame_shape(self):
        if self._shape is None:
            self._shape = self.read([0]).shape[1:3]
        return self._shape

    @property
    def height(self):
        return int(self._frame_shape()[0])

    @property
    def width(self):
        return int(self._frame_shape()[1])

    def _read_sorted(self, indices):
        import decord
        try:
            frames = self._vr.get_batch(indices.tolist()).asnumpy()
        except (decord.DECORDError, RuntimeError) as err:
            raise VideoReadError(f'{self.path}: decord failed to decode frames '
                                 f'{indices[0]}..{indices[-1]}: {_first_line(err)}') from err
        self._shape = frames.shape[1:3]
        return frames


SEEK_MARGIN = 1.0  # seconds: demuxers seek to a keyframe by dts, earlier than pts with B-frames
_SHOWINFO_TB = re.compile(r'Parsed_showinfo.*config in time_base: (\d+)/(\d+)')
_SHOWINFO_PTS = re.compile(r'Parsed_showinfo.*\bn:\s*\d+\s+pts:\s*(-?\d+)')


class FFmpegReader(VideoReader):
    """Video file decoded by an ffmpeg pipe to raw RGB (works wherever ffmpeg does).

    A read near the start decodes from the first frame. A later read seeks: ffmpeg jumps
    (``-ss`` before ``-i``) to ``SEEK_MARGIN`` seconds before the first requested frame,
    where the demuxer finds a keyframe, and ``trim`` drops every frame shown before that
    frame, judged on the file's own timestamps (``-copyts``); so a read decodes about the
    requested span, not the video up to it. Frame ``i`` is the frame with the i-th
    timestamp (``VideoInfo.frame_times``, from the probe's packet listing), which is what a
    decode from the start yields; every seeking read checks the timestamps of the frames it
    decoded (``showinfo``) against the expected ones. A file whose frames cannot be found
    by timestamp (no presentation timestamps, as in many AVI files; repeated timestamps;
    edit lists), or a seeking read that does not check out (a demuxer that lands after
    the target), is decoded from the start instead, for that read and all later ones:
    slower, never other frames.
    Memory holds the requested frames only.
    """

    def __init__(self, path, ffmpeg=None):
        self.path = str(path)
        self._exe = ffmpeg or find_ffmpeg()
        try:
            self.info = probe_video(self.path, self._exe)
        except FFmpegError as err:
            raise VideoReadError(str(err)) from err
        self.num_frames = self.info.num_frames
        self.fps = self.info.fps
        self._times = self.info.frame_times  # the probe's packet listing: for seeking
        self.no_seek_reason = self._times.problem  # why this file is decoded from the start
        self.frames_decoded = 0  # frames ffmpeg decoded for the last read (seek or not)

    @property
    def height(self):
        return self.info.height

    @property
    def width(self):
        return self.info.width

    def _read_sorted(self, indices):
        late = indices[0] > 0 and indices[0] / self.fps >= 2 * SEEK_MARGIN
        if late and self.no_seek_reason is None:
            frames = self._read_seeking(indices)
            if frames is not None:
                return frames
        return self._read_from_start(indices)

    def _read_from_start(self, indices):
        """Decode frames 0 .. indices[-1] and keep the requested ones."""
        last = int(indices[-1])
        args = ['-i', self.path, '-map', '0:V:0', '-fps_mode', 'passthrough',
                '-frames:v', str(last + 1)]
        frames, decoded, stderr, rc = self._run(args, set(indices.tolist()), last + 1)
        self.frames_decoded = decoded
        return self._checked(frames, indices, stderr, rc)

    def _read_seeking(self, indices):
        """Frames ``indices`` (sorted, unique) decoded from shortly before the first one,
        or None when the decoded frames are not the expected ones."""
        first, last = int(indices[0]), int(indices[-1])
        times = self._times
        # keep frames from half-way between frame first - 1 and frame first: no rounding of
        # the decimal seconds below can move a frame across that line
        start = (times.seconds(first - 1) + times.seconds(first)) / 2
        seek = times.seconds(first) - SEEK_MARGIN
        # -seek_timestamp: -ss is a timestamp of the file, as the listed ones (not offset by
        # the file's start time); -noaccurate_seek: trim alone decides which frames stay
        seek_args = (['-seek_timestamp', '1', '-noaccurate_seek', '-ss', _decimal(seek)]
                     if seek > times.seconds(0) else [])
        args = ['-copyts', *seek_args, '-i', self.path, '-map', '0:V:0',
                '-vf', f'showinfo=checksum=0,trim=start={_decimal(start)}',
                '-fps_mode', 'passthrough', '-frames:v', str(last - first + 1)]
        wanted = {int(i) - first for i in indices}
        frames, _, stderr, rc = self._run(args, wanted, last - first + 1, log_frames=True)
        shown = _showinfo_times(stderr)
        self.frames_decoded = len(shown)
        expected = [times.seconds(i) for i in range(first, last + 1)]
        if [t for t in shown if t >= start][:len(expected)] != expected:
            self.no_seek_reason = (f'a seeking read of frames {first}..{last} decoded other '
                                   'frames than expected')
            return None
        return self._checked(frames, indices, stderr, rc)

    def _run(self, input_args, wanted, count, log_frames=False):
        """Run ffmpeg (``input_args`` up to the output options), read ``count`` raw RGB frames
        and keep those at positions ``wanted`` -> (frames, frames read, stderr, rc)."""
        frame_bytes = self.height * self.width * 3
        level = 'level+info' if log_frames else 'level+error'  # showinfo logs at info
        cmd = [self._exe, '-nostdin', '-hide_banner', '-loglevel', level, *input_args,
               '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-']
        frames, read = [], 0
        with tempfile.TemporaryFile() as err_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file)
            with proc.stdout:
                for position in range(count):
                    buf = proc.stdout.read(frame_bytes)
                    if len(buf) < frame_bytes:
                        break
                    read += 1
                    if position in wanted:
                        frames.append(np.frombuffer(buf, np.uint8))
            proc.wait()
            err_file.seek(0)
            stderr = err_file.read().decode(errors='replace')
        return frames, read, stderr, proc.returncode

    def _checked(self, frames, indices, stderr, rc):
        if len(frames) < len(indices):
            errors = [line for line in stderr.splitlines()
                      if '[error]' in line or '[fatal]' in line]
            raise VideoReadError(
                f'{self.path}: ffmpeg decoded too few frames ({len(frames)} of {len(indices)} '
                f'requested, rc {rc}): {" | ".join(errors)[-300:]}')
        return np.stack(frames).reshape(len(indices), self.height, self.width, 3)


def _showinfo_times(stderr):
    """Seconds (exact fractions) of the frames showinfo logged, in order."""
    tb = _SHOWINFO_TB.search(stderr)
    if tb is None:
        return []
    base = Fraction(int(tb.group(1)), int(tb.group(2)))
    return [int(m.group(1)) * base for m in _SHOWINFO_PTS.finditer(stderr)]


def _decimal(seconds):
    """Seconds as ffmpeg reads them (microseconds are its resolution)."""
    return f'{float(seconds):.6f}'


class FrameFolderReader(VideoReader):
    """A folder of numbered JPEG/PNG frames; reads only the requested files.

    ``meta.json`` (written by ``extract_frames``) gives the frame count, fps, file pattern
    and size; without it the folder is listed and ``fps`` must be given.
    """

    def __init__(self, path, fps=None):
        self.path = str(path)
        folder = Path(path)
        if not folder.is_dir():
            raise VideoReadError(f'{self.path}: no such frame folder')
        meta_path = folder / META_FILE
        self._files = None
        if meta_path.is_file():
            self._init_from_meta(meta_path)
        else:
            self._init_from_listing(folder)
        self.fps = float(fps) if fps is not None else self._meta_fps
        if self.fps is None or not self.fps > 0:
            raise VideoReadError(f'{self.path}: frame rate unknown (no fps in {META_FILE}); '
                                 'pass fps=')
        self._shape = None

    def _init_from_meta(self, meta_path):
        try:
            meta = json.loads(meta_path.read_text())
            self.num_frames = int(meta['num_frames'])
            self._pattern = meta['pattern']
            self._start = int(meta.get('start_index', 1))
            self._meta_fps = meta.get('fps')
            if 'height' in meta:
                self._shape = (int(meta['height']), int(meta['width']))
        except (ValueError, KeyError, TypeError) as err:
            raise VideoReadError(f'{meta_path}: bad frame metadata: {err}') from err

    def _init_from_listing(self, folder):
        names = sorted(e.name for e in os.scandir(folder)
                       if e.name.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise VideoReadError(f'{self.path}: no JPEG/PNG frames in the folder')
        self._files = names
        self.num_frames = len(names)
        self._meta_fps = None

    def _file(self, index):
        name = self._files[index] if self._files else self._pattern % (self._start + index)
        return os.path.join(self.path, name)

    def _load(self, index):
        from PIL import Image
        path = self._file(index)
        try:
            with Image.open(path) as img:
                return np.asarray(img.convert('RGB'))
        except OSError as err:
            raise VideoReadError(f'{path}: cannot read frame {index}: {err}') from err

    def _read_sorted(self, indices):
        frames = [self._load(i) for i in indices.tolist()]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise VideoReadError(f'{self.path}: frames of different sizes {sorted(shapes)}')
        return np.stack(frames)

    @property
    def height(self):
        if self._shape is None:
            self._shape = self._load(0).shape[:2]
        return int(self._shape[0])

    @property
    def width(self):
        if self._shape is None:
            self._shape = self._load(0).shape[:2]
        return int(self._shape[1])


class ResampledReader(VideoReader):
    """A reader seen at another frame rate: frame k is the source frame showing time
    (k + 0.5) / fps, so frames are dropped (lower fps) or repeated (higher fps)."""

    def __init__(self, reader: VideoReader, fps: float):
        self.reader = reader
        self.path = reader.path
        self.fps = float(fps)
        self.num_frames = max(1, int(np.floor(reader.num_frames * self.fps / reader.fps)))

    height = property(lambda self: self.reader.height)
    width = property(lambda self: self.reader.width)

    def source_indices(self, indices):
        src = np.floor((np.asarray(indices) + 0.5) * self.reader.fps / self.fps)
        return np.clip(src.astype(np.int64), 0, self.reader.num_frames - 1)

    def _read_sorted(self, indices):
        return self.reader.read(self.source_indices(indices))


def open_video(path, backend='auto', fps=None, sample_fps=None, num_threads=1) -> VideoReader:
    """Open a frame folder or a video file.

    backend: 'auto' (folder -> frames; file -> decord, then ffmpeg if decord fails),
        'decord', 'ffmpeg' or 'frames'.
    fps: frame rate of a folder without ``meta.json`` (or an override of the stored one);
        for video files it overrides the measured average rate.
    sample_fps: view the video at this frame rate (see ``ResampledReader``).
    """
    path = str(path)
    if backend == 'auto':
        backend = 'frames' if os.path.isdir(path) else 'auto_file'
    if backend == 'frames':
        reader = FrameFolderReader(path, fps)
    elif backend == 'decord':
        reader = DecordReader(path, num_threads)
    elif backend == 'ffmpeg':
        reader = FFmpegReader(path)
    elif backend == 'auto_file':
        reader = _open_file(path, num_threads)
    else:
        raise ValueError(f"backend must be 'auto', 'decord', 'ffmpeg' or 'frames', "
                         f'got {backend!r}')
    if fps is not None and backend != 'frames':
        reader.fps = float(fps)
    if sample_fps is not None and abs(sample_fps - reader.fps) > 1e-6:
        reader = ResampledReader(reader, sample_fps)
    return reader


def _open_file(path, num_threads):
    if not os.path.isfile(path):
        raise VideoReadError(f'{path}: no such video file or frame folder')
    try:
        return DecordReader(path, num_threads)
    except VideoReadError as decord_err:
        try:
            return FFmpegReader(path)
        except VideoReadError as ffmpeg_err:
            raise VideoReadError(f'{path}: unreadable by decord ({decord_err}) and by ffmpeg '
                                 f'({ffmpeg_err})') from ffmpeg_err


def _first_line(err):
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
