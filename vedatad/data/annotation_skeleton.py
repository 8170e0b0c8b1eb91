"""An annotation skeleton for a folder of your own videos: duration and frame rate measured
from the files, a split per video, no actions yet (label them elsewhere, then
``csv_import``).

Videos are ``VIDEO_DIR/<video_id>.<ext>`` files or ``VIDEO_DIR/<video_id>/`` frame folders
(``tools/data/extract_frames.py``); the id is the name without the extension. Each video is
opened once with the readers of ``video_readers`` (decord, else an ffmpeg probe: WebM files
without a duration in their header are measured from their packets); a video that no
reader opens is refused by name with the reason.

Split rules (``--subset``): ``NAME`` puts every video in one split;
``training=0.8,validation=0.2`` splits by fractions (a fixed order from a hash of the video
id, so adding videos moves few others); ``validation=val_*,test=*`` assigns by file-name
pattern, first match wins (a video no pattern matches is an error).
"""
import fnmatch
import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .video_dataset import VIDEO_EXTS
from .video_readers import VideoReadError, open_video

SKELETON_VERSION = 'vedatad-skeleton-1'


class SplitRuleError(ValueError):
    """A ``--subset`` rule that cannot be read, or videos it leaves without a split."""


@dataclass(frozen=True)
class VideoFacts:
    video_id: str
    path: str
    num_frames: int
    fps: float
    duration: float  # seconds: num_frames / fps
    reader: str      # which reader measured it


def list_videos(video_dir):
    """(video id -> path, video id -> [entries] for ids that name several entries)."""
    if not os.path.isdir(video_dir):
        raise FileNotFoundError(f'video folder not found: {video_dir}')
    entries = {}
    for entry in sorted(os.scandir(video_dir), key=lambda e: e.name):
        stem, ext = os.path.splitext(entry.name)
        if entry.is_dir():
            entries.setdefault(entry.name, []).append(entry.path)
        elif ext.lower() in VIDEO_EXTS:
            entries.setdefault(stem, []).append(entry.path)
    found = {vid: paths[0] for vid, paths in entries.items() if len(paths) == 1}
    ambiguous = {vid: paths for vid, paths in entries.items() if len(paths) > 1}
    return found, ambiguous


def measure_video(video_id, path):
    """VideoFacts of one video file or frame folder; raises VideoReadError naming it."""
    reader = open_video(path)
    if reader.num_frames <= 0 or not reader.fps > 0:
        raise VideoReadError(f'{path}: {reader.num_frames} frames at {reader.fps} fps')
    return VideoFacts(video_id, str(path), int(reader.num_frames), float(reader.fps),
                      reader.num_frames / float(reader.fps), type(reader).__name__)


def measure_videos(video_dir, workers=1, progress=False):
    """(video id -> VideoFacts, video id -> reason refused) for every video of the folder."""
    found, ambiguous = list_videos(video_dir)
    refused = {vid: 'several entries share this id: '
               + ', '.join(os.path.basename(p) for p in paths) + '; keep one'
               for vid, paths in ambiguous.items()}

    def one(item):
        vid, path = item
        try:
            return vid, measure_video(vid, path), None
        except (VideoReadError, OSError, ValueError) as err:
            return vid, None, str(err)

    items = sorted(found.items())
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(one, items)
        if progress:
            from tqdm import tqdm
            results = tqdm(results, total=len(items), desc='measure videos', unit='video')
        facts = {}
        for vid, fact, error in results:
            if error:
                refused[vid] = error
            else:
                facts[vid] = fact
    return facts, dict(sorted(refused.items()))


# ---------------------------------------------------------------------- split rules
def _hash_order(video_ids):
    return sorted(video_ids, key=lambda v: hashlib.sha1(v.encode('utf-8')).hexdigest())


def _counts(fractions, total):
    """Largest-remainder rounding of fractions x total (the counts add up to total)."""
    raw = [f * total for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def parse_split_rule(spec):
    """A ``--subset`` rule -> function(video ids) -> {video id: subset} (see module doc)."""
    spec = (spec or '').strip()
    if not spec:
        raise SplitRuleError('empty --subset rule')
    if '=' not in spec:
        return lambda ids: {vid: spec for vid in ids}
    pairs = []
    for part in spec.split(','):
        if '=' not in part:
            raise SplitRuleError(f'--subset {spec!r}: {part!r} is not NAME=FRACTION or '
                                 'NAME=PATTERN')
        name, value = (x.strip() for x in part.split('=', 1))
        if not name or not value:
            raise SplitRuleError(f'--subset {spec!r}: empty name or value in {part!r}')
        pairs.append((name, value))
    try:
        fractions = [float(v) for _, v in pairs]
    except ValueError:
        fractions = None
    if fractions is not None:
        if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise SplitRuleError(f'--subset {spec!r}: fractions must be >= 0 and add up to 1 '
                                 f'(they add up to {sum(fractions):g})')

        def by_fraction(ids):
            ordered = _hash_order(ids)
            out, start = {}, 0
            for (name, _), count in zip(pairs, _counts(fractions, len(ordered))):
                out.update({vid: name for vid in ordered[start:start + count]})
                start += count
            return out
        return by_fraction
    if any(_is_number(v) for _, v in pairs):
        raise SplitRuleError(f'--subset {spec!r}: mixes fractions and patterns')

    def by_pattern(ids):
        out, unmatched = {}, []
        for vid in ids:
            name = next((n for n, pattern in pairs if fnmatch.fnmatchcase(vid, pattern)), None)
            if name is None:
                unmatched.append(vid)
            else:
                out[vid] = name
        if unmatched:
            raise SplitRuleError(f'--subset {spec!r}: {len(unmatched)} video(s) match no '
                                 f'pattern: {", ".join(unmatched[:10])}; add a last rule such '
                                 'as training=*')
        return out
    return by_pattern


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------- skeleton
def skeleton_entry(facts: VideoFacts, subset):
    return {'subset': subset, 'duration': round(facts.duration, 6),
            'fps': round(facts.fps, 6), 'num_frames': facts.num_frames, 'annotations': []}


def make_skeleton(facts, subsets):
    """ActivityNet-style dict for measured videos; ``subsets``: video id -> subset."""
    database = {vid: skeleton_entry(facts[vid], subsets[vid]) for vid in sorted(facts)}
    return {'version': SKELETON_VERSION, 'database': database}


def write_annotations(path, data, overwrite=False):
    """Write an annotation JSON atomically; an existing file is kept unless ``overwrite``."""
    from ..utils.io import atomic_write_json
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f'{path} exists; pass --overwrite to replace it')
    atomic_write_json(path, data, indent=1)
