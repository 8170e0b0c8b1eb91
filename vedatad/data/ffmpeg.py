"""ffmpeg helpers: locate the binary, probe a video stream, extract frames to a folder.

There is no ffprobe here (imageio-ffmpeg ships ffmpeg only), so a stream is probed with
``ffmpeg -i FILE -map 0:V:0 -map 0:a? -c copy -f framecrc -``: the stream header (codec,
size, rotation, the container's duration) comes from stderr and one line per packet
(timestamp, duration) from stdout. Copying packets decodes nothing, so this is fast even
for long videos. A file whose streams all end well before the duration its container
declares (or that ffmpeg calls a "partial file") is truncated: its expected frame count
comes from the declared duration, otherwise from the video packets.

Frame extraction counts what ffmpeg decodes: errors it reports while decoding (garbled
data, a cut-off file) and frames missing against the expected count fail the video beyond
the thresholds (``max_decode_errors``, ``max_missing``), and are recorded in ``meta.json``
below them, so a broken video is never stored as a complete one without a word.

Every frame folder's ``meta.json`` records the settings that made its frames
(``frame_settings``: fps, size or short side, file pattern, JPEG quality, raw ffmpeg
options, ffmpeg version), so the frames of a new video can be made the same way
(``shared_frame_settings``, ``frame_settings_kwargs``).

The frame rate is the *average* rate ``frames / stream time span``. ``r_frame_rate``
(what ffmpeg prints as ``tbr``) is never used: for phone videos it is the 90 kHz timebase.
"""
import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path

from vedatad.utils.io import atomic_write_json

META_FILE = 'meta.json'  # written last, atomically: its presence marks a complete folder
FRAME_PATTERNS = {'jpg': '%05d.jpg', 'png': '%05d.png'}
NOPTS = -(2**63)


class FFmpegError(RuntimeError):
    """ffmpeg is missing or failed on a file; the message names the file."""


def find_ffmpeg() -> str:
    """Path of an ffmpeg binary: $VEDATAD_FFMPEG, then PATH, then imageio-ffmpeg's."""
    exe = os.environ.get('VEDATAD_FFMPEG') or shutil.which('ffmpeg')
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        raise FFmpegError('no ffmpeg binary: put ffmpeg on PATH, set VEDATAD_FFMPEG '
                          f'or pip install imageio-ffmpeg ({err})') from err


@dataclass(frozen=True)
class FrameTimes:
    """When each frame of a video stream is shown, as stored (no start offset removed):
    frame ``i`` (presentation order, what a decode from the start yields) is shown at
    ``pts[i] * time_base`` seconds. ``problem`` says why frames cannot be found by their
    timestamps in this file (None: they can)."""
    pts: tuple
    time_base: Fraction
    problem: str | None = None

    def seconds(self, index):
        return self.pts[index] * self.time_base


_PKT_KEY, _PKT_DISCARD = 0x1, 0x4  # AV_PKT_FLAG_*: framecrc prints F=0x.. unless key only


def _timing_problem(pts, flags):
    if not pts:
        return 'no video packets'
    if NOPTS in pts:  # e.g. AVI: the decoder numbers frames by packet order instead
        return 'packets without presentation timestamps'
    if len(set(pts)) < len(pts):
        return 'two packets with one timestamp'
    if not flags[0] & _PKT_KEY:  # decoders drop what comes before the first keyframe
        return 'the stream does not start with a keyframe'
    if any(f & _PKT_DISCARD for f in flags):  # edit lists: decoded, but never output
        return 'packets the decoder discards (edit list)'
    return None


@dataclass(frozen=True)
class VideoInfo:
    """What decoding the first video stream of a file yields (rotation already applied)."""
    path: str
    codec: str
    width: int   # displayed width (after the rotation metadata is applied)
    height: int
    rotation: int  # degrees, as stored in the display matrix
    num_frames: int
    fps: float  # average frame rate: num_frames / duration
    duration: float  # seconds: num_frames / fps
    container_duration: float | None = None  # what the container declares (None: unknown)
    truncated: bool = False  # the file ends before the container's declared duration
    frame_times: FrameTimes | None = field(default=None, repr=False)  # for seeking reads

    def record(self):
        """The fields a frame folder's meta.json keeps (not the per-frame times)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != 'frame_times'}

    def expected_frames(self, fps=None):
        """Frames a complete decode yields: at the source rate (``fps`` None) or resampled
        to ``fps``. A truncated file is judged by its declared duration."""
        seconds = self.container_duration if self.truncated else self.duration
        if fps is None:
            return self.num_frames if not self.truncated else round(seconds * self.fps)
        return round(seconds * fps)


_STREAM_RE = re.compile(r'Stream #\d+:\d+.*?: Video: (\w+)(?P<rest>.*)')
_SIZE_RE = re.compile(r', (\d{1,5})x(\d{1,5})')
_ROTATION_RE = re.compile(r'rotation of (-?\d+(?:\.\d+)?) degrees')
_FPS_RE = re.compile(r', (\d+(?:\.\d+)?) fps')
_DURATION_RE = re.compile(r'Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)')
_ANY_STREAM_RE = re.compile(r'Stream #\d+:\d+.*?: (\w+): (\w+)')


def _container_duration(stderr):
    match = _DURATION_RE.search(stderr)
    if not match:
        return None  # 'Duration: N/A'
    h, m, sec = match.groups()
    return int(h) * 3600 + int(m) * 60 + float(sec)


def _no_video_stream_error(path, stderr):
    """FFmpegError saying in words that the file has no video stream, or None."""
    if "matches no streams" not in stderr and "Failed to set value '0:V:0'" not in stderr:
        return None
    kinds = [f'{kind.lower()} ({codec})' for kind, codec in _ANY_STREAM_RE.findall(stderr)]
    found = ', '.join(kinds) if kinds else 'no streams at all'
    return FFmpegError(f'{path}: has no video stream (the file holds {found}); it is not a '
                       'video, or its video track is missing')


def _parse_header(stderr: str, path):
    """codec, stored width/height, rotation and printed fps of the first video stream."""
    header = stderr.split('Output #0')[0].split('Stream mapping:')[0]
    lines = header.splitlines()
    for i, line in enumerate(lines):
        match = _STREAM_RE.search(line)
        if not match or 'attached pic' in line:
            continue
        size = _SIZE_RE.search(match.group('rest'))
        if size is None:
            raise FFmpegError(f'{path}: video stream without a frame size: {line.strip()}')
        fps = _FPS_RE.search(line)
        rotation = 0
        for side in lines[i + 1:]:
            if 'Stream #' in side:
                break
            rot = _ROTATION_RE.search(side)
            if rot:
                rotation = int(round(float(rot.group(1))))
        return (match.group(1), int(size.group(1)), int(size.group(2)), rotation,
                float(fps.group(1)) if fps else None)
    raise FFmpegError(f'{path}: no video stream found by ffmpeg')


def _parse_packets(framecrc: str):
    """{output stream index: (time base, [(dts, pts, duration, flags), ...])} from framecrc
    text (stream 0 is the video stream)."""
    time_bases, packets = {}, {}
    for line in framecrc.splitlines():
        if line.startswith('#tb '):
            index, base = line[4:].split(':', 1)
            time_bases[int(index)] = Fraction(base.strip())
        elif line and not line.startswith('#'):
            fields = [f.strip() for f in line.split(',')]
            flag = [f for f in fields[6:] if f.startswith('F=')]  # absent: keyframe only
            packets.setdefault(int(fields[0]), []).append(
                (int(fields[1]), int(fields[2]), int(fields[3]),
                 int(flag[0][2:], 16) if flag else _PKT_KEY))
    return {i: (time_bases[i], p) for i, p in packets.items() if i in time_bases}


def _span(time_base, packets):
    """(packets, first time, end time) in seconds of one stream."""
    times = [(dts if pts == NOPTS else pts, dur) for dts, pts, dur, _ in packets]
    first = min(ts for ts, _ in times)  # AVI packets often carry no pts: their dts
    end = max(ts + max(dur, 0) for ts, dur in times)
    return len(times), float(first * time_base), float(end * time_base)


def _frame_times(time_base, packets):
    """When each frame of the video stream is shown (one frame per packet, by timestamp)."""
    pts = [p for _, p, _, _ in packets]
    return FrameTimes(tuple(sorted(pts)), time_base,
                      _timing_problem(pts, [f for _, _, _, f in packets]))


def _average_fps(num_frames, span, printed_fps):
    """Average frame rate from the packet timestamps, checked against ffmpeg's printout.

    ffmpeg prints the container's average rate rounded to 0.01. The timestamp estimate is
    more precise when it agrees with it, but reordered or gappy timestamps (edit lists,
    B-frames) can throw it off by a frame; then the printed rate wins, snapped to the
    NTSC rate k*1000/1001 it stands for (29.97 -> 30000/1001).
    """
    measured = num_frames / span if num_frames > 1 and span > 0 else None
    if printed_fps is None:
        return measured
    if measured is not None and abs(measured - printed_fps) <= 0.006:
        return measured
    ntsc = round(printed_fps * 1.001) / 1.001
    return ntsc if abs(ntsc - printed_fps) <= 0.006 and ntsc != round(ntsc) else printed_fps


def probe_video(path, ffmpeg=None) -> VideoInfo:
    """Probe the first (non cover-art) video stream of ``path``; raises FFmpegError."""
    path = str(path)
    if not os.path.isfile(path):
        raise FFmpegError(f'{path}: no such video file')
    # packets as stored (-copyts: no start offset removed), so that the frame times are the
    # file's own and a reader can seek by them; nothing is decoded
    cmd = [ffmpeg or find_ffmpeg(), '-hide_banner', '-nostdin', '-copyts', '-i', path,
           '-map', '0:V:0', '-map', '0:a?', '-c', 'copy', '-f', 'framecrc', '-']
    proc = subprocess.run(cmd, capture_output=True, text=True, errors='replace')
    if proc.returncode != 0:
        no_video = _no_video_stream_error(path, proc.stderr)
        if no_video is not None:
            raise no_video
        tail = ' | '.join(proc.stderr.strip().splitlines()[-3:])
        raise FFmpegError(f'{path}: ffmpeg cannot read this file: {tail}')
    codec, width, height, rotation, printed_fps = _parse_header(proc.stderr, path)
    packets = _parse_packets(proc.stdout)
    if 0 not in packets:
        raise FFmpegError(f'{path}: the video stream has no frames')
    streams = {i: _span(*p) for i, p in packets.items()}
    num_frames, start, end = streams[0]
    fps = _average_fps(num_frames, end - start, printed_fps)
    if fps is None:
        raise FFmpegError(f'{path}: cannot tell the frame rate (no timestamps, no fps)')
    if rotation % 180:  # a quarter turn swaps the displayed width and height
        width, height = height, width
    declared = _container_duration(proc.stderr)
    file_end = max(e for _, _, e in streams.values()) - start
    truncated = 'partial file' in proc.stderr or (
        declared is not None and file_end < declared - max(0.5, 2 / fps))
    return VideoInfo(path, codec, width, height, rotation, num_frames, fps, num_frames / fps,
                     declared, truncated, _frame_times(*packets[0]))


def scale_filter(size=None, short_side=None):
    """ffmpeg ``scale`` arguments for a fixed (w, h) size or a short-side resize."""
    if size is not None and short_side is not None:
        raise ValueError('give either size or short_side, not both')
    if size is not None:
        return f'{int(size[0])}:{int(size[1])}'
    if short_side is not None:
        s = int(short_side)  # -2 keeps the aspect ratio with an even length
        return f"'if(lt(iw,ih),{s},-2)':'if(lt(iw,ih),-2,{s})'"
    return None


@functools.lru_cache(maxsize=None)
def video_encoder(ffmpeg):
    """'libx264' when the ffmpeg binary has it, else 'mpeg4'."""
    out = subprocess.run([ffmpeg, '-hide_banner', '-encoders'], capture_output=True, text=True)
    return 'libx264' if ' libx264 ' in out.stdout else 'mpeg4'


def is_complete(frame_dir) -> bool:
    return (Path(frame_dir) / META_FILE).is_file()


def read_frame_meta(frame_dir) -> dict:
    with open(Path(frame_dir) / META_FILE) as f:
        return json.load(f)


def _clear_folder(frame_dir: Path):
    if frame_dir.exists():
        shutil.rmtree(frame_dir)
    frame_dir.mkdir(parents=True)


def _frame_files(frame_dir: Path):
    return sorted(p.name for p in frame_dir.iterdir()
                  if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))


DEFAULT_MAX_MISSING = 0.02     # fraction of the expected frames a video may lack
DEFAULT_MAX_DECODE_ERRORS = 0  # errors ffmpeg may report while decoding a video


def extract_frames(video, frame_dir, fps=None, size=None, short_side=None, fmt='jpg',
                   quality=2, extra_args=None, pattern=None, ffmpeg=None,
                   max_missing=DEFAULT_MAX_MISSING,
                   max_decode_errors=DEFAULT_MAX_DECODE_ERRORS) -> dict:
    """Decode ``video`` into ``frame_dir/00001.jpg ...`` and return the folder's metadata.

    fps: output frame rate (frames are dropped/duplicated by ffmpeg's ``fps`` filter);
        None keeps every source frame. size: (w, h); short_side: resize keeping the ratio.
    extra_args / pattern: raw ffmpeg output options and file pattern (for users of
        hand-written ffmpeg command lines); then the folder's fps is recorded only if given,
        and no frame count is expected.
    max_missing: a video with more than this fraction of its expected frames missing
        (and more than one frame) fails; max_decode_errors: so does one for which ffmpeg
        reports more decode errors. Below the thresholds the counts are recorded in
        ``meta.json`` (``expected_frames``, ``missing_frames``, ``decode_errors``,
        ``decode_error_sample``) and reported as warnings.
    ``meta.json`` also records the settings that made the frames (``frame_settings``: fps,
    size, short_side, pattern, quality, ffmpeg_args, ffmpeg_version), and the ffmpeg
    command is built from them.
    A folder holding ``meta.json`` is complete and returned as is; anything else in the
    way is deleted and redone. ``meta.json`` is written last, atomically; a failed video
    gets none (its folder is redone by the next run).
    """
    frame_dir = Path(frame_dir)
    if is_complete(frame_dir):
        return read_frame_meta(frame_dir)
    exe = ffmpeg or find_ffmpeg()
    settings = _frame_settings(fps, size, short_side, pattern or FRAME_PATTERNS[fmt], quality,
                               extra_args, exe)
    info = probe_video(video, exe)
    _clear_folder(frame_dir)
    proc = subprocess.run(_frame_command(video, frame_dir, settings, exe), capture_output=True,
                          text=True, errors='replace')
    if proc.returncode != 0:
        tail = ' | '.join(proc.stderr.strip().splitlines()[-3:])
        raise FFmpegError(f'{video}: ffmpeg frame extraction failed (rc {proc.returncode}): {tail}')
    errors = decode_errors(proc.stderr)
    expected = None if extra_args else info.expected_frames(fps)
    meta = _frame_meta(frame_dir, video, info, fps, settings['pattern'], bool(extra_args))
    meta.update(_check_counts(video, info, meta['num_frames'], expected, errors, max_missing,
                              max_decode_errors))
    meta[FRAME_SETTINGS] = settings
    atomic_write_json(frame_dir / META_FILE, meta, indent=1)
    return meta


FRAME_SETTINGS = 'frame_settings'  # the meta.json key of the settings that made the frames
# the extract_frames arguments that determine the frames; raw options (ffmpeg_args) replace
# all but the pattern, and are not repeated for new videos (they may name anything)
REPEATABLE_SETTINGS = ('fps', 'size', 'short_side', 'pattern', 'quality')
FRAME_SETTING_KEYS = REPEATABLE_SETTINGS + ('ffmpeg_args', 'ffmpeg_version')


def _frame_settings(fps, size, short_side, pattern, quality, extra_args, exe):
    """What ``extract_frames`` applies, as recorded in meta.json (JSON types): a setting the
    command does not apply is None (fps and size under raw options, quality for PNG)."""
    raw = list(extra_args) if extra_args else None
    jpeg = pattern.lower().endswith(('.jpg', '.jpeg'))
    return dict(fps=None if fps is None or raw else float(fps),
                size=None if size is None or raw else [int(size[0]), int(size[1])],
                short_side=None if short_side is None or raw else int(short_side),
                pattern=pattern, quality=int(quality) if jpeg and not raw else None,
                ffmpeg_args=raw, ffmpeg_version=ffmpeg_version(exe))


def _frame_command(video, frame_dir, settings, exe):
    """The ffmpeg command line that writes the frames ``settings`` describe: built from the
    recorded settings, so what meta.json says is what was run."""
    import ffmpeg as ffmpeg_python
    output = str(frame_dir / settings['pattern'])
    filters = [f"fps={settings['fps']}"] if settings['fps'] is not None else []
    scale = scale_filter(settings['size'], settings['short_side'])
    if scale:
        filters.append(f'scale={scale}')
    out_opts = {'map': '0:V:0', 'fps_mode': 'passthrough'}
    if filters:
        out_opts['vf'] = ','.join(filters)
    if settings['quality'] is not None:
        out_opts['q:v'] = settings['quality']
    stream = ffmpeg_python.input(str(video)).output(output, **out_opts)
    args = stream.global_args('-hide_banner', '-nostdin', '-loglevel', 'error').compile(cmd=exe)
    if settings['ffmpeg_args']:  # raw options go right before the output file name
        at = args.index(output)
        args[at:at] = settings['ffmpeg_args']
    return args


@functools.lru_cache(maxsize=None)
def ffmpeg_version(ffmpeg):
    """The version an ffmpeg binary reports ('6.1.1-3ubuntu5'; its first line if unusual)."""
    proc = subprocess.run([ffmpeg, '-version'], capture_output=True, text=True,
                          errors='replace')
    first = (proc.stdout.strip().splitlines() or ['unknown'])[0]
    match = re.match(r'ffmpeg version (\S+)', first)
    return match.group(1) if match else first


def frame_settings_kwargs(settings):
    """The ``extract_frames`` arguments that make frames as ``settings`` (a folder's
    recorded ``frame_settings``, without raw options) describe."""
    return {key: settings[key] for key in REPEATABLE_SETTINGS}


def shared_frame_settings(frame_dirs):
    """(settings, None): the ``frame_settings`` every folder records alike (``ffmpeg_version``
    a sorted list when the folders name several), or (None, why the frames of a new video
    cannot be made as these were), naming the first folder at fault."""
    first, first_dir, versions = None, None, set()
    for frame_dir in frame_dirs:
        settings, why = _repeatable_settings(frame_dir)
        if why:
            return None, why
        versions.add(settings['ffmpeg_version'])
        if first is None:
            first, first_dir = settings, frame_dir
            continue
        differ = [f'{key} {first[key]!r} vs {settings[key]!r}' for key in REPEATABLE_SETTINGS
                  if settings[key] != first[key]]
        if differ:
            return None, (f'frame folders {first_dir} and {frame_dir} were extracted with '
                          f'other settings ({", ".join(differ)})')
    if first is None:
        return None, 'no frame folder'
    ordered = sorted(versions, key=str)
    return dict(first, ffmpeg_version=ordered[0] if len(ordered) == 1 else ordered), None


def _repeatable_settings(frame_dir):
    """(a folder's recorded frame settings, None), or (None, why they cannot be repeated)."""
    where = Path(frame_dir) / META_FILE
    try:
        settings = read_frame_meta(frame_dir).get(FRAME_SETTINGS)
    except FileNotFoundError:
        return None, f'{where} does not exist (the folder was not made by extract_frames)'
    except (OSError, ValueError, AttributeError) as err:
        return None, f'{where} is unreadable ({err})'
    if not isinstance(settings, dict):
        return None, (f'{where} does not record the frame settings (written by an older '
                      'extract_frames)')
    missing = [key for key in FRAME_SETTING_KEYS if key not in settings]
    if missing:
        return None, f'{where} does not record {", ".join(missing)} in {FRAME_SETTINGS}'
    if settings['ffmpeg_args']:
        return None, (f'{Path(frame_dir)} was made with raw ffmpeg options '
                      f'({" ".join(map(str, settings["ffmpeg_args"]))})')
    return settings, None


# error-level lines from the output side (image muxer, filters) say nothing about the input
_OUTPUT_TAGS = ('[image2', '[out#', '[vost#', '[ost#', '[mux', '[vf#', '[fc#', '[graph',
                '[Parsed_', '[auto_', '[swscaler')


def decode_errors(stderr):
    """The lines of an ``-loglevel error`` run that report trouble reading the input
    (demuxer or decoder), e.g. '[h264 @ 0x..] Invalid NAL unit size', 'partial file'."""
    errors, keep = [], False
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('Last message repeated'):
            if keep:
                errors.append(line)
            continue
        keep = not line.startswith(_OUTPUT_TAGS)
        if keep:
            errors.append(line)
    return errors


def _check_counts(video, info, written, expected, errors, max_missing, max_decode_errors):
    """The counts recorded in meta.json; raises FFmpegError beyond the thresholds."""
    missing = max(0, expected - written) if expected is not None else 0
    problems = []
    if expected is not None and missing > max(1, int(max_missing * expected)):
        cut = ' (the file is truncated)' if info.truncated else ''
        problems.append(f'{written} of {expected} expected frames decoded, {missing} '
                        f'missing{cut}')
    if len(errors) > max_decode_errors:
        problems.append(f'ffmpeg reported {len(errors)} decode errors (first: {errors[0]})')
    if problems:
        raise FFmpegError(f'{video}: ' + '; '.join(problems) + '. Not marked complete '
                          f'(thresholds --max-missing-frames {max_missing}, '
                          f'--max-decode-errors {max_decode_errors}); repair or re-download '
                          'the file, or raise the thresholds to accept it')
    return dict(expected_frames=expected, missing_frames=missing, decode_errors=len(errors),
                decode_error_sample=errors[:3])


def _frame_meta(frame_dir: Path, video, info: VideoInfo, fps, pattern, raw_args) -> dict:
    from PIL import Image
    files = _frame_files(frame_dir)
    if not files:
        raise FFmpegError(f'{video}: ffmpeg wrote no frames to {frame_dir}')
    with Image.open(frame_dir / files[0]) as img:
        width, height = img.size
    first = int(Path(files[0]).stem) if Path(files[0]).stem.isdigit() else 1
    if fps is None and not raw_args:
        fps = info.fps  # every source frame kept
    return dict(video=Path(video).name, num_frames=len(files),
                fps=None if fps is None else float(fps), width=width, height=height,
                pattern=pattern, start_index=first, source=info.record())


def describe_counts(meta) -> tuple[bool, str]:
    """(has a warning, 'N frames (E expected, M missing), K decode errors: ...')."""
    text = f"{meta.get('num_frames')} frames"
    expected, missing = meta.get('expected_frames'), meta.get('missing_frames') or 0
    if expected is not None:
        text += f' ({expected} expected' + (f', {missing} missing)' if missing else ')')
    errors = meta.get('decode_errors') or 0
    if errors:
        text += f", {errors} decode errors (first: {meta['decode_error_sample'][0]})"
    return bool(missing or errors), text


def reencode_video(video, output, size=None, max_frames=None, ffmpeg=None, crf=18) -> dict:
    """Re-encode ``video`` to ``output`` (mp4, no audio) at ``size`` (w, h) with at most
    ``max_frames`` frames: a longer video gets a proportionally lower frame rate.

    Written to a temporary file and renamed, so an existing ``output`` is always complete.
    Returns the new stream's frame count and fps.
    """
    import ffmpeg as ffmpeg_python
    exe = ffmpeg or find_ffmpeg()
    info = probe_video(video, exe)
    fps = info.fps
    if max_frames is not None and info.num_frames > max_frames:
        fps = max_frames / info.duration
    filters = [f'fps={Fraction(fps).limit_denominator(100000)}']
    if size is not None:
        filters.append(f'scale={int(size[0])}:{int(size[1])}')
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f'.{output.stem}.partial{output.suffix}')
    codec = video_encoder(exe)
    opts = {'map': '0:V:0', 'vf': ','.join(filters), 'c:v': codec, 'pix_fmt': 'yuv420p',
            'an': None}
    opts.update({'preset': 'veryfast', 'crf': crf} if codec == 'libx264' else {'q:v': 3})
    if max_frames is not None:
        opts['frames:v'] = max_frames  # the fps filter may round up by one frame
    stream = ffmpeg_python.input(str(video)).output(str(tmp), **opts)
    args = stream.global_args('-hide_banner', '-nostdin', '-loglevel', 'error', '-y') \
        .compile(cmd=exe)
    proc = subprocess.run(args, capture_output=True, text=True, errors='replace')
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = ' | '.join(proc.stderr.strip().splitlines()[-3:])
        raise FFmpegError(f'{video}: re-encoding failed (rc {proc.returncode}): {tail}')
    os.replace(tmp, output)
    new = probe_video(output, exe)
    return dict(num_frames=new.num_frames, fps=new.fps)
