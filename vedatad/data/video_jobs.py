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

    def report(self) -> str:
        lines = [f'{len(self.done)} done, {len(self.skipped)} already complete, '
                 f'{len(self.failed)} failed']
        lines += [f'FAILED {name}: {msg}' for name, msg in sorted(self.failed.items())]
        return '\n'.join(lines)


def list_videos(in_dir, exts=VIDEO_EXTS):
    """Video files directly under ``in_dir`` (sorted); raises if there is none."""
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f'{in_dir}: no such input folder')
    videos = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not videos:
        raise FileNotFoundError(f'{in_dir}: no video files ({", ".join(exts)})')
    return videos


def run_video_jobs(videos, job, is_done, workers=1, desc='videos', progress=True) -> JobSummary:
    """Call ``job(video)`` for every video where ``is_done(video)`` is false.

    ``job`` must be picklable (module-level function or functools.partial) when workers > 1.
    Exceptions are caught per video and recorded in the summary under the file name.
    """
    summary = JobSummary()
    todo = []
    for video in videos:
        (summary.skipped if is_done(video) else todo).append(video)
    bar = progress_bar(len(todo), desc, progress)
    if workers <= 1:
        for video in todo:
            _record(summary, video, lambda v=video: job(v))
            bar.update()
    else:
        with ProcessPoolExecutor(min(workers, max(len(todo), 1))) as pool:
            futures = {pool.submit(job, video): video for video in todo}
            for future in as_completed(futures):
                _record(summary, futures[future], future.result)
                bar.update()
    bar.close()
    return summary


def progress_bar(total, desc, enabled=True):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='video', disable=not enabled)


def _record(summary, video, outcome):
    name = Path(video).name
    try:
        outcome()
        summary.done.append(name)
    except Exception as err:  # noqa: BLE001 - one bad video must not stop the others
        text = str(err).strip()
        summary.failed[name] = text.splitlines()[0] if text else type(err).__name__


def _extract_one(video, out_dir, **kwargs):
    from .ffmpeg import extract_frames
    extract_frames(video, Path(out_dir) / Path(video).stem, **kwargs)


def _frames_complete(out_dir, video):
    from .ffmpeg import is_complete
    return is_complete(Path(out_dir) / Path(video).stem)


def extract_frames_folder(in_dir, out_dir, workers=1, progress=True, **kwargs) -> JobSummary:
    """Frames of every video under ``in_dir`` into ``out_dir/<stem>/`` (see extract_frames);
    complete folders are skipped, half-written ones redone."""
    videos = list_videos(in_dir)
    return run_video_jobs(videos, partial(_extract_one, out_dir=out_dir, **kwargs),
                          partial(_frames_complete, out_dir), workers, 'extract frames',
                          progress)


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
