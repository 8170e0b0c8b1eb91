"""Run one job per video in parallel, resumably, with a progress bar and a failure summary.

Used by frame extraction and video re-encoding: jobs already done are skipped, a failing
video is reported by name and the others still finish.
"""
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

VIDEO_EXTS = ('.mp4', '.mkv', '.webm', '.avi', '.mov', '.m4v', '.mpg', '.mpeg', '.flv', '.wmv')


@dataclass
class JobSummary:
    done: list = field(default_factory=list)      # processed now
    skipped: list = field(default_factory=list)   # complete from an earlier run
    failed: dict = field(default_factory=dict)    # video name -> error message
    details: dict = field(default_factory=dict)   # video name -> (warning?, counts text)

    @property
    def warned(self):
        return sorted(name for name, (warn, _) in self.details.items() if warn)

    def report(self) -> str:
        """A count line, then one line per video: ok / WARN (with its counts) / FAILED."""
        lines = [f'{len(self.done)} done, {len(self.skipped)} already complete, '
                 f'{len(self.failed)} failed, {len(self.warned)} with warnings']
        for name in sorted(set(self.done) | set(self.skipped) | set(self.failed)):
            if name in self.failed:
                lines.append(f'FAILED {name}: {self.failed[name]}')
                continue
            warn, text = self.details.get(name, (False, ''))
            earlier = ' (done earlier)' if name in self.skipped else ''
            lines.append(f'{"WARN" if warn else "ok"} {name}{earlier}' +
                         (f': {text}' if text else ''))
        return '\n'.join(lines)


def list_videos(in_dir, exts=VIDEO_EXTS):
    """Video files directly under ``in_dir`` (sorted); raises if there is none."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f'{in_dir}: no such input folder')
    videos = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not videos:
        raise FileNotFoundError(f'{in_dir}: no video files ({", ".join(exts)})')
    by_stem = {}
    for video in videos:
        by_stem.setdefault(video.stem, []).append(video.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:  # outputs are named by stem: one would silently take the other's place
        raise ValueError(f'{in_dir}: videos with the same name would share one output '
                         f'({"; ".join(" and ".join(n) for n in clashes)}); rename them')
    return videos


def run_video_jobs(videos, job, is_done, workers=1, desc='videos', progress=True,
                   describe=None, describe_done=None) -> JobSummary:
    """Call ``job(video)`` for every video where ``is_done(video)`` is false.

    ``job`` must be picklable (module-level function or functools.partial) when workers > 1.
    Exceptions are caught per video and recorded in the summary under the file name.
    ``describe(result)`` -> (warning?, text) turns a job's result into the video's line of
    the report; ``describe_done(video)`` does so for videos complete from an earlier run.
    """
    summary = JobSummary()
    todo = []
    for video in videos:
        if is_done(video):
            summary.skipped.append(Path(video).name)
            if describe_done is not None:
                summary.details[Path(video).name] = describe_done(video)
        else:
            todo.append(video)
    bar = progress_bar(len(todo), desc, progress)
    if workers <= 1:
        for video in todo:
            _record(summary, video, lambda v=video: job(v), describe)
            bar.update()
    else:
        with ProcessPoolExecutor(min(workers, max(len(todo), 1))) as pool:
            futures = {pool.submit(job, video): video for video in todo}
            for future in as_completed(futures):
                _record(summary, futures[future], future.result, describe)
                bar.update()
    bar.close()
    return summary


def progress_bar(total, desc, enabled=True):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='video', disable=not enabled)


def _record(summary, video, outcome, describe=None):
    name = Path(video).name
    try:
        result = outcome()
        summary.done.append(name)
        if describe is not None:
            summary.details[name] = describe(result)
    except Exception as err:  # noqa: BLE001 - one bad video must not stop the others
        text = str(err).strip()
        summary.failed[name] = text.splitlines()[0] if text else type(err).__name__


def _extract_one(video, out_dir, **kwargs):
    from .ffmpeg import extract_frames
    return extract_frames(video, Path(out_dir) / Path(video).stem, **kwargs)


def _frames_complete(out_dir, video):
    from .ffmpeg import is_complete
    return is_complete(Path(out_dir) / Path(video).stem)


def _describe_frames(meta):
    from .ffmpeg import describe_counts
    return describe_counts(meta)


def _describe_done_frames(out_dir, video):
    from .ffmpeg import describe_counts, read_frame_meta
    try:
        return describe_counts(read_frame_meta(Path(out_dir) / Path(video).stem))
    except (OSError, ValueError):
        return False, ''


def extract_frames_folder(in_dir, out_dir, workers=1, progress=True, **kwargs) -> JobSummary:
    """Frames of every video under ``in_dir`` into ``out_dir/<stem>/`` (see extract_frames,
    whose thresholds ``max_missing`` / ``max_decode_errors`` pass through); complete
    folders are skipped, half-written ones redone. The report gives every video's counts."""
    videos = list_videos(in_dir)
    return run_video_jobs(videos, partial(_extract_one, out_dir=out_dir, **kwargs),
                          partial(_frames_complete, out_dir), workers, 'extract frames',
                          progress, describe=_describe_frames,
                          describe_done=partial(_describe_done_frames, out_dir))


def _reencode_one(video, out_dir, **kwargs):
    from .ffmpeg import reencode_video
    reencode_video(video, Path(out_dir) / f'{Path(video).stem}.mp4', **kwargs)


def _reencoded(out_dir, video):
    return (Path(out_dir) / f'{Path(video).stem}.mp4').is_file()


def reencode_folder(in_dir, out_dir, workers=1, progress=True, **kwargs) -> JobSummary:
    """Re-encode every video under ``in_dir`` to ``out_dir/<stem>.mp4`` (see reencode_video);
    existing outputs are complete (they are renamed into place) and skipped."""
    videos = list_videos(in_dir)
    return run_video_jobs(videos, partial(_reencode_one, out_dir=out_dir, **kwargs),
                          partial(_reencoded, out_dir), workers, 're-encode', progress)
