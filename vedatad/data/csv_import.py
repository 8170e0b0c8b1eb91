"""Import actions labelled elsewhere from a simple CSV into ActivityNet-style annotations.

CSV: one action per row, ``video,start,end,label`` (seconds; a header row with these names
is optional, columns may then come in any order, and an extra column can give each video's
split). ``video`` is the video id: the file name without its extension.

Every row is validated and every problem is reported at once, as ``FILE:LINE: ...``: wrong
number of fields, times that are not finite numbers, negative or zero-length or reversed
segments, empty labels, unknown videos (with the closest id), an action ending after the
video (more than one frame past its end; within one frame it is clipped to the end), a
video whose rows name two splits. Exact repeats of a row are dropped and counted.

Durations and frame rates come from an annotation skeleton (``annotation_skeleton``) or are
measured from the video folder. The output is written atomically.
"""
import csv
import difflib
import math
from collections import Counter
from dataclasses import dataclass

COLUMNS = ('video', 'start', 'end', 'label')


class CsvImportError(ValueError):
    """The CSV (or its videos) has problems; the message lists every one as FILE:LINE."""


@dataclass(frozen=True)
class CsvAction:
    line: int
    video: str
    start: float
    end: float
    label: str
    subset: str | None


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _header(row, subset_column):
    names = [c.strip().lower() for c in row]
    if not set(COLUMNS) <= set(names):
        return None
    if subset_column is not None and subset_column.lower() not in names:
        raise CsvImportError(f'the CSV header {row} has no column {subset_column!r} '
                             '(--subset-column)')
    index = {name: names.index(name) for name in COLUMNS}
    if subset_column is not None:
        index['subset'] = names.index(subset_column.lower())
    return index


def read_csv(path, subset_column=None):
    """(actions, problems) of a CSV file; problems are 'FILE:LINE: message' lines."""
    try:
        with open(path, newline='', encoding='utf-8-sig') as f:
            rows = [(i + 1, row) for i, row in enumerate(csv.reader(f))]
    except UnicodeDecodeError as err:
        return [], [f'{path}: not UTF-8 text (byte {err.start}); save the CSV as UTF-8']
    except csv.Error as err:
        return [], [f'{path}: unreadable CSV: {err}']
    rows = [(n, row) for n, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return [], [f'{path}: no rows']
    try:
        index = _header(rows[0][1], subset_column)
    except CsvImportError as err:
        return [], [f'{path}:{rows[0][0]}: {err}']
    if index is None:  # no header: the documented column order
        index = {name: i for i, name in enumerate(COLUMNS)}
        if subset_column is not None:
            index['subset'] = len(COLUMNS)
    else:
        rows = rows[1:]
    width = max(index.values()) + 1
    actions, problems = [], []
    for line, row in rows:
        where = f'{path}:{line}'
        if len(row) < width:
            problems.append(f'{where}: {len(row)} field(s), expected at least {width} '
                            f'({", ".join(sorted(index, key=index.get))}): {row}')
            continue
        cell = {name: row[i].strip() for name, i in index.items()}
        start, end = _number(cell['start']), _number(cell['end'])
        line_problems = []
        if not cell['video']:
            line_problems.append('empty video id')
        if start is None or end is None:
            line_problems.append(f'start/end must be finite numbers of seconds, got '
                                 f'{cell["start"]!r}, {cell["end"]!r}')
        elif start < 0:
            line_problems.append(f'negative start {start}')
        elif end == start:
            line_problems.append(f'zero-length segment [{start}, {end}]')
        elif end < start:
            line_problems.append(f'segment [{start}, {end}] ends before it starts')
        if not cell['label']:
            line_problems.append('empty label')
        if 'subset' in cell and not cell['subset']:
            line_problems.append(f'empty {subset_column!r} column')
        if line_problems:
            problems += [f'{where}: {p}' for p in line_problems]
            continue
        actions.append(CsvAction(line, cell['video'], start, end, cell['label'],
                                 cell.get('subset')))
    return actions, problems


def _close_id(video, known):
    stem = video.rsplit('.', 1)[0]
    if stem in known:
        return f'; did you mean {stem!r}? (video ids are file names without the extension)'
    close = difflib.get_close_matches(video, list(known), n=1, cutoff=0.6)
    return f'; did you mean {close[0]!r}?' if close else ''


def build_database(csv_path, videos, actions, subsets=None, subset_column=None, notes=None):
    """ActivityNet ``database`` from validated CSV actions.

    videos: video id -> dict(duration, fps, num_frames (optional), subset (optional)), the
        videos that exist; subsets: video id -> split from a rule (overrides everything);
        subset_column: the splits come from the CSV rows (then from ``videos``' own subset).
    Returns (database, problems); ``notes`` (a list) receives counted remarks.
    """
    notes = notes if notes is not None else []
    problems, seen, repeats, clipped = [], set(), 0, 0
    per_video, row_splits = {}, {}
    for act in actions:
        where = f'{csv_path}:{act.line}'
        video = videos.get(act.video)
        if video is None:
            problems.append(f'{where}: unknown video {act.video!r}'
                            + _close_id(act.video, videos))
            continue
        key = (act.video, act.start, act.end, act.label)
        if key in seen:
            repeats += 1
            continue
        seen.add(key)
        duration, fps = float(video['duration']), float(video.get('fps') or 0) or None
        end = act.end
        if end > duration:
            slack = 1.0 / fps if fps else 0.0
            if end > duration + slack + 1e-6:
                problems.append(f'{where}: video {act.video!r}: the action ends at {end} s, '
                                f'after the video\'s end at {duration:.3f} s')
                continue
            end, clipped = duration, clipped + 1
        if act.start >= end:
            problems.append(f'{where}: video {act.video!r}: the action starts at '
                            f'{act.start} s, at or after the video\'s end {duration:.3f} s')
            continue
        per_video.setdefault(act.video, []).append((act.start, end, act.label))
        if subset_column is not None:
            row_splits.setdefault(act.video, {}).setdefault(act.subset, act.line)
    for vid, splits in row_splits.items():
        if len(splits) > 1:
            problems.append(f'{csv_path}: video {vid!r} is in several splits: '
                            + ', '.join(f'{s!r} (line {n})' for s, n in splits.items()))
    labels = sorted({label for acts in per_video.values() for _, _, label in acts})
    label_id = {label: i for i, label in enumerate(labels)}
    database, unsplit = {}, []
    for vid in sorted(videos):
        info = videos[vid]
        if subsets is not None:
            subset = subsets.get(vid)
        elif subset_column is not None and vid in row_splits:
            subset = next(iter(row_splits[vid]))
        else:
            subset = info.get('subset')
        if not subset:
            unsplit.append(vid)
            continue
        entry = {'subset': subset, 'duration': info['duration'], 'fps': info.get('fps')}
        if info.get('num_frames') is not None:
            entry['num_frames'] = info['num_frames']
        entry['annotations'] = [
            {'segment': [round(s, 6), round(e, 6)], 'label': label, 'label_id': label_id[label]}
            for s, e, label in sorted(per_video.get(vid, []))]
        database[vid] = entry
    if unsplit:
        notes.append(f'{len(unsplit)} video(s) without a split were left out (give --subset, '
                     f'or rows in the split column): {", ".join(unsplit[:10])}')
    if repeats:
        notes.append(f'{csv_path}: dropped {repeats} exact repeat(s) of a row')
    if clipped:
        notes.append(f'{csv_path}: {clipped} action(s) ending less than one frame after their '
                     'video were clipped to its end')
    empty = sum(1 for v in database.values() if not v['annotations'])
    if empty:
        notes.append(f'{empty} video(s) have no action (kept as background-only videos)')
    counts = Counter(v['subset'] for v in database.values())
    notes.append('splits: ' + ', '.join(f'{k} {n}' for k, n in sorted(counts.items()))
                 + f'; {sum(map(len, per_video.values()))} action(s), {len(labels)} label(s)')
    return database, problems


def _line_of(problem):
    """Line number of a 'FILE:LINE: ...' problem (file-level problems last)."""
    head = problem.split(': ', 1)[0]
    tail = head.rsplit(':', 1)[-1]
    return int(tail) if tail.isdigit() else math.inf


def import_csv(csv_path, videos, subsets=None, subset_column=None):
    """(annotation dict, notes); raises CsvImportError listing every problem."""
    actions, problems = read_csv(csv_path, subset_column)
    notes = []
    database, more = build_database(csv_path, videos, actions, subsets, subset_column, notes)
    problems = sorted(problems + more, key=_line_of)
    if problems:
        raise CsvImportError(f'{len(problems)} problem(s), nothing written:\n'
                             + '\n'.join(problems))
    return {'version': 'vedatad-csv-import-1', 'database': database}, notes
