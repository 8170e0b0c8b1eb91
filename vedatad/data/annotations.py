"""ActivityNet-style temporal annotations: loading, validation, label maps.

File format::

    {"database": {video_id: {"subset": str, "duration": seconds, "fps": float (optional),
                             "annotations": [{"segment": [t0, t1], "label": str,
                                              "label_id": int (optional)}]}}}

Only the videos of the requested subset are validated (a broken entry of another split does
not block work on this one). Segments that end after the video's stated duration are real
(THUMOS14 test has 26 of them); they are kept as given, as the official ActivityNet evaluator
does, and reported in one warning. Zero-length segments (start == end, ActivityNet has a few)
are kept as well for evaluation and counted in a warning; the training datasets drop them.
A key given twice in one JSON object (two videos with one id) is an error.
"""
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..utils.io import read_json


class AnnotationError(ValueError):
    """Malformed annotation input; the message names the file, the video and the field."""


class AnnotationWarning(UserWarning):
    """Something unusual but usable in an annotation file (counts in the message)."""


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    label: str
    label_id: int | None = None


@dataclass
class VideoAnnotation:
    video_id: str
    subset: str
    duration: float
    fps: float | None
    segments: list[Segment] = field(default_factory=list)


def _is_number(value) -> bool:
    # bool is an int subclass, but `true` is never a time
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _BadField(Exception):
    """Internal: one field of one record is malformed (field name, reason)."""

    def __init__(self, field_name, reason):
        super().__init__(field_name, reason)
        self.field_name = field_name
        self.reason = reason


def _parse_segment(ann, index) -> Segment:
    where = f'annotations[{index}]'
    if not isinstance(ann, dict):
        raise _BadField(where, f'expected an object, got {type(ann).__name__}')
    seg = ann.get('segment')
    if seg is None:
        raise _BadField(f'{where}.segment', 'missing')
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise _BadField(f'{where}.segment', f'expected [t0, t1], got {seg!r}')
    t0, t1 = seg
    if not (_is_number(t0) and _is_number(t1)):
        raise _BadField(f'{where}.segment', f'non-numeric or non-finite times {seg!r}')
    if t0 < 0 or t1 < 0:
        raise _BadField(f'{where}.segment', f'negative time in {seg!r}')
    if t0 > t1:
        raise _BadField(f'{where}.segment', f'start after end in {seg!r}')
    label = ann.get('label')
    if label is None:
        raise _BadField(f'{where}.label', 'missing')
    if not isinstance(label, str) or not label:
        raise _BadField(f'{where}.label', f'expected a non-empty string, got {label!r}')
    label_id = ann.get('label_id')
    if label_id is not None and (not isinstance(label_id, int) or isinstance(label_id, bool)
                                 or label_id < 0):
        raise _BadField(f'{where}.label_id', f'expected a non-negative integer, got {label_id!r}')
    return Segment(float(t0), float(t1), label, label_id)


def _parse_video_header(video_id, entry):
    """Validate the video-level fields; returns (duration, fps)."""
    if not isinstance(entry, dict):
        raise _BadField('<entry>', f'expected an object, got {type(entry).__name__}')
    duration = entry.get('duration')
    if duration is None:
        raise _BadField('duration', 'missing')
    if not _is_number(duration) or duration < 0:
        raise _BadField('duration', f'expected a non-negative number, got {duration!r}')
    fps = entry.get('fps')
    if fps is not None and (not _is_number(fps) or fps <= 0):
        raise _BadField('fps', f'expected a positive number, got {fps!r}')
    anns = entry.get('annotations')
    if anns is None:
        raise _BadField('annotations', 'missing')
    if not isinstance(anns, list):
        raise _BadField('annotations', f'expected a list, got {type(anns).__name__}')
    return float(duration), (None if fps is None else float(fps))


def _read_database(path):
    path = Path(path)
    data = read_json(path, AnnotationError)
    if not isinstance(data, dict) or not isinstance(data.get('database'), dict):
        raise AnnotationError(f'{path}: missing top-level "database" object')
    return data['database']


def _subset_of(video_id, entry, strict, report):
    subset = entry.get('subset') if isinstance(entry, dict) else None
    if isinstance(subset, str):
        return subset
    if strict:
        raise AnnotationError(f'{report.path}: video {video_id!r}: field "subset": '
                              f'expected a string, got {subset!r}')
    report.dropped_videos.append(video_id)
    report.malformed(video_id, 'subset', f'expected a string, got {subset!r}')
    return None


class _Report:
    """Counts of dropped / unusual records, turned into one warning per file."""

    def __init__(self, path):
        self.path = path
        self.bad = Counter()            # reason field -> count
        self.bad_videos = set()
        self.dropped_videos = []
        self.past_end = 0
        self.past_end_videos = Counter()
        self.max_past_end = 0.0
        self.zero_length_videos = Counter()
        self.messages = []              # one line per malformed record (non-strict loads)

    def malformed(self, video_id, field_name, reason):
        self.messages.append(f'video {video_id!r}: field "{field_name}": {reason}')

    def emit(self):
        if self.bad or self.dropped_videos:
            fields = ', '.join(f'{k}: {v}' for k, v in sorted(self.bad.items()))
            warnings.warn(
                f'{self.path}: dropped {sum(self.bad.values())} malformed segment(s) in '
                f'{len(self.bad_videos)} video(s) ({fields or "none"}) and '
                f'{len(self.dropped_videos)} malformed video(s)'
                + (f' (e.g. {self.dropped_videos[0]!r})' if self.dropped_videos else ''),
                AnnotationWarning, stacklevel=3)
        for note in self.notes():
            warnings.warn(note, AnnotationWarning, stacklevel=3)

    def notes(self):
        """Unusual but usable findings, one counted line each."""
        lines = []
        if self.past_end:
            worst = self.past_end_videos.most_common(1)[0][0]
            lines.append(
                f'{self.path}: {self.past_end} segment(s) in {len(self.past_end_videos)} '
                f'video(s) end after the video duration (at most {self.max_past_end:.2f} s '
                f'past; most in {worst!r}); kept as given')
        if self.zero_length_videos:
            count = sum(self.zero_length_videos.values())
            example = self.zero_length_videos.most_common(1)[0][0]
            lines.append(
                f'{self.path}: {count} zero-length segment(s) (start == end) in '
                f'{len(self.zero_length_videos)} video(s) (e.g. {example!r}); kept for '
                'evaluation, where they can never be matched; training drops them')
        return lines


def _load_video(video_id, entry, subset, strict, report) -> VideoAnnotation | None:
    try:
        duration, fps = _parse_video_header(video_id, entry)
    except _BadField as e:
        if strict:
            raise AnnotationError(f'{report.path}: video {video_id!r}: field "{e.field_name}": '
                                  f'{e.reason}') from None
        report.dropped_videos.append(video_id)
        report.malformed(video_id, e.field_name, e.reason)
        return None
    segments = []
    for i, ann in enumerate(entry['annotations']):
        try:
            seg = _parse_segment(ann, i)
        except _BadField as e:
            if strict:
                raise AnnotationError(f'{report.path}: video {video_id!r}: field '
                                      f'"{e.field_name}": {e.reason}') from None
            report.bad[e.field_name.split('.')[-1]] += 1
            report.bad_videos.add(video_id)
            report.malformed(video_id, e.field_name, e.reason)
            continue
        if seg.end == seg.start:
            report.zero_length_videos[video_id] += 1
        if seg.end > duration:
            report.past_end += 1
            report.past_end_videos[video_id] += 1
            report.max_past_end = max(report.max_past_end, seg.end - duration)
        segments.append(seg)
    return VideoAnnotation(video_id, subset, duration, fps, segments)


def load_annotations(path, subset=None, strict=True) -> dict[str, VideoAnnotation]:
    """Load an ActivityNet-style annotation JSON into typed records (file order kept).

    Args:
        path: the JSON file.
        subset: keep only videos whose "subset" equals this, case-insensitively
            ("Validation" == "validation"); None keeps every video.
        strict: malformed input raises AnnotationError naming file, video and field; with
            strict=False the bad segments (and videos with bad video-level fields) are dropped
            and one warning with counts is emitted.
    """
    database = _read_database(path)
    report = _Report(path)
    wanted = None if subset is None else subset.lower()
    videos = {}
    for video_id, entry in database.items():
        video_subset = _subset_of(video_id, entry, strict, report)
        if video_subset is None or (wanted is not None and video_subset.lower() != wanted):
            continue
        video = _load_video(video_id, entry, video_subset, strict, report)
        if video is not None:
            videos[video_id] = video
    report.emit()
    return videos


def check_annotation_file(path):
    """Every problem of an annotation file at once (for checkers, which report all problems
    before any work): returns ``(videos, problems, notes)``: the well-formed records of every
    subset, one line per malformed record or file-level error, and the counted
    unusual-but-usable findings (segments past the end, zero-length segments); every line
    names the file.
    """
    try:
        database = _read_database(path)
    except (AnnotationError, OSError) as err:
        return {}, [str(err)], []
    report = _Report(path)
    videos = {}
    for video_id, entry in database.items():
        subset = _subset_of(video_id, entry, False, report)
        if subset is None:
            continue
        video = _load_video(video_id, entry, subset, False, report)
        if video is not None:
            videos[video_id] = video
    problems = [f'{path}: {line}' for line in report.messages]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', AnnotationWarning)
            build_label_map(videos.values(), source=path)
    except AnnotationError as err:
        problems.append(str(err))
    return videos, problems, report.notes()


def label_map_from_ids(pairs, source=None) -> dict[str, int]:
    """Label name -> ``label_id`` from (label, label_id) pairs, sorted by id.

    Ids must correspond one to one with names: two labels sharing an id, or a label with two
    ids, is an AnnotationError naming them (training would silently merge or split classes).
    """
    ids_by_label, labels_by_id = {}, {}
    for label, label_id in pairs:
        ids_by_label.setdefault(label, set()).add(label_id)
        labels_by_id.setdefault(label_id, set()).add(label)
    shared = {i: sorted(names) for i, names in labels_by_id.items() if len(names) > 1}
    split = {name: sorted(ids) for name, ids in ids_by_label.items() if len(ids) > 1}
    if shared or split:
        lines = [f'label_id {i} is given to labels {names}' for i, names in sorted(shared.items())]
        lines += [f'label {name!r} has label_ids {ids}' for name, ids in sorted(split.items())]
        where = f'{source}: ' if source else ''
        raise AnnotationError(f'{where}label_id does not correspond one to one with label '
                              'names: ' + '; '.join(lines) + ' (give each label exactly one id)')
    mapping = {label: next(iter(ids)) for label, ids in ids_by_label.items()}
    return dict(sorted(mapping.items(), key=lambda kv: kv[1]))


def build_label_map(videos: Iterable[VideoAnnotation], source=None) -> dict[str, int]:
    """Label name -> class index.

    Uses the files' ``label_id`` when every segment has one (one to one with names, see
    ``label_map_from_ids``). When only some segments have an id, the sorted label names are
    numbered 0..K-1, with a warning giving the counts; likewise when none has one.
    """
    names, pairs, missing_id = set(), [], 0
    for video in videos:
        for seg in video.segments:
            names.add(seg.label)
            if seg.label_id is None:
                missing_id += 1
            else:
                pairs.append((seg.label, seg.label_id))
    if pairs and not missing_id:
        return label_map_from_ids(pairs, source)
    if pairs:
        label_map_from_ids(pairs, source)  # clashing ids are an error even when partial
        where = f'{source}: ' if source else ''
        warnings.warn(f'{where}label_id is given for {len(pairs)} segment(s) and missing for '
                      f'{missing_id}; numbering sorted label names instead',
                      AnnotationWarning, stacklevel=2)
    return {label: i for i, label in enumerate(sorted(names))}
