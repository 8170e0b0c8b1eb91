"""THUMOS14 official per-class txt annotations -> ActivityNet-style JSON.

The release has one file per class and split, ``<Class>_<split>.txt`` (split ``val`` or
``test``), one instance per line: ``video_id  t0 t1`` (seconds). ``Ambiguous_<split>.txt``
marks stretches that are neither action nor background; they are not ground truth and go
to a separate top-level ``"ambiguous"`` key ({video_id: [[t0, t1], ...]}).
"""
import warnings
from pathlib import Path

SUBSET_NAMES = {'val': 'validation', 'test': 'test'}
AMBIGUOUS = 'Ambiguous'


def txt_dir(anno_root, mode):
    """The folder holding ``*_<mode>.txt``: ``anno_root/<mode>`` or ``anno_root`` itself."""
    root = Path(anno_root)
    for folder in (root / mode, root):
        if any(folder.glob(f'*_{mode}.txt')):
            return folder
    raise FileNotFoundError(f'{root}: no *_{mode}.txt annotation files (also looked in '
                            f'{root / mode})')


def class_names(anno_root, folder, mode):
    """Classes in the order of ``detclasslist.txt`` (``<index> <Name>`` lines) if present,
    else the sorted names of the txt files."""
    for candidate in (Path(anno_root) / 'detclasslist.txt', folder / 'detclasslist.txt'):
        if candidate.is_file():
            names = [line.split()[-1] for line in candidate.read_text().splitlines()
                     if line.strip()]
            return names
    names = sorted(p.name[:-len(f'_{mode}.txt')] for p in folder.glob(f'*_{mode}.txt'))
    return [n for n in names if n != AMBIGUOUS]


def read_instances(path):
    """[(video_id, t0, t1)] of one txt file; malformed lines raise naming file:line."""
    instances = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            video_id, t0, t1 = fields[0], float(fields[1]), float(fields[2])
            if len(fields) != 3:
                raise ValueError('expected 3 fields')
        except (ValueError, IndexError) as err:
            raise ValueError(f'{path}:{lineno}: expected "video_id t0 t1", got {line!r} '
                             f'({err})') from None
        if not 0 <= t0 <= t1:
            raise ValueError(f'{path}:{lineno}: bad segment [{t0}, {t1}] for {video_id}')
        instances.append((video_id, t0, t1))
    return instances


def read_thumos_txt(anno_root, mode):
    """(classes, {class: instances}, ambiguous instances) of one split."""
    if mode not in SUBSET_NAMES:
        raise ValueError(f"mode must be 'val' or 'test', got {mode!r}")
    folder = txt_dir(anno_root, mode)
    classes = class_names(anno_root, folder, mode)
    per_class = {}
    for name in classes:
        path = folder / f'{name}_{mode}.txt'
        if not path.is_file():
            raise FileNotFoundError(f'{path}: missing annotation file of class {name!r}')
        per_class[name] = read_instances(path)
    ambiguous_path = folder / f'{AMBIGUOUS}_{mode}.txt'
    ambiguous = read_instances(ambiguous_path) if ambiguous_path.is_file() else []
    return classes, per_class, ambiguous


def thumos_to_activitynet(anno_root, mode, durations=None):
    """ActivityNet-style dict of one split.

    durations: {video_id: seconds}; videos without one get ``"duration": null`` and are
    listed in one warning. Annotations of a video are sorted by (t0, t1, class order);
    videos by id.
    """
    classes, per_class, ambiguous = read_thumos_txt(anno_root, mode)
    durations = durations or {}
    by_video = {}
    for order, name in enumerate(classes):
        for video_id, t0, t1 in per_class[name]:
            by_video.setdefault(video_id, []).append((t0, t1, order, name))
    database, unknown = {}, []
    for video_id in sorted(by_video):
        duration = durations.get(video_id)
        if duration is None:
            unknown.append(video_id)
        anns = sorted(by_video[video_id])
        database[video_id] = dict(
            subset=SUBSET_NAMES[mode],
            duration=None if duration is None else float(duration),
            annotations=[dict(segment=[t0, t1], label=name) for t0, t1, _, name in anns])
    if unknown:
        warnings.warn(f'{len(unknown)} of {len(database)} videos have no known duration '
                      f'(e.g. {unknown[:3]}); written as null: give --video_root or '
                      '--durations', stacklevel=2)
    amb = {}
    for video_id, t0, t1 in ambiguous:
        amb.setdefault(video_id, []).append([t0, t1])
    return dict(version='THUMOS14', taxonomy=[dict(label=n, label_id=i)
                                              for i, n in enumerate(classes)],
                database=database,
                ambiguous={k: sorted(v) for k, v in sorted(amb.items())})


def load_durations(path):
    """{video_id: seconds} from a plain mapping or an ActivityNet JSON ("database")."""
    from ..utils.io import read_json
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get('database'), dict):
        return {k: v.get('duration') for k, v in data['database'].items()}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected {{video_id: seconds}} or an ActivityNet JSON')
    return data


def measure_durations(video_root, video_ids, progress=True):
    """{video_id: num_frames / fps} measured from ``video_root/<id>.<ext>`` or frame folders;
    videos that are absent or unreadable are left out (and reported)."""
    from .ffmpeg import FFmpegError
    from .video_dataset import find_videos
    from .video_readers import VideoReadError, open_video
    from .video_jobs import progress_bar
    paths, missing = find_videos(video_root, list(video_ids))
    durations, failed = {}, []
    bar = progress_bar(len(paths), 'measure durations', progress)
    for video_id, path in paths.items():
        try:
            durations[video_id] = open_video(path).duration
        except (VideoReadError, FFmpegError) as err:
            failed.append(f'{video_id}: {err}')
        bar.update()
    bar.close()
    if missing or failed:
        warnings.warn(f'{video_root}: {len(missing)} video(s) not found (e.g. {missing[:3]}), '
                      f'{len(failed)} unreadable {failed[:3]}', stacklevel=2)
    return durations
