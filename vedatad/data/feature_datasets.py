"""Datasets of pre-extracted clip features (one file per video) for the feature-based detector.

Every item is a dict with the keys of the ActionFormer release, which the detector consumes:
``video_id``, ``feats`` (C, T) float32, ``segments`` (N, 2) in feature steps or None,
``labels`` (N,) or None, ``fps``, ``duration``, ``feat_stride``, ``feat_num_frames``.
Feature step ``i`` is the clip whose centre frame is ``i * feat_stride + feat_num_frames / 2``,
so seconds become steps as ``(t * fps - 0.5 * feat_num_frames) / feat_stride``.

The four datasets differ only where the published settings differ: THUMOS14 (``.npy``, videos
without a feature file skipped), ActivityNet-1.3 (``.npy``, duplicate ground truth removed,
features resampled to a fixed length), EPIC-Kitchens-100 (``.npz`` holding ``feats``) and
Ego4D-MQ (several feature folders concatenated along channels). ``GenericFeatureDataset``
(``generic_datasets.py``) is the one for your own features.

Features are checked when loaded: shape (T, input_dim) and finite values (NaN / inf is an error
naming the file and the video, in training and in validation alike).
"""
import logging
import os
import zipfile

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from ..registry import COLLATE_FUNCTIONS, DATASETS
from .annotations import AnnotationError, label_map_from_ids
from .feature_crop import crop_item

logger = logging.getLogger(__name__)

UNKNOWN_DURATION = 1e8  # what the release assumes when a video has no duration


class FeatureFileError(ValueError):
    """A feature file is missing or does not fit the configuration; names the video."""


@COLLATE_FUNCTIONS.register_module(name='list_collate')
def list_collate(batch):
    """Keep a batch as a list of item dicts: videos have different lengths, the model pads."""
    return list(batch)


def drop_duplicate_segments(segments, tol=1e-3):
    """Drop segments shorter than ``tol`` and repeats (same class, same ends within ``tol``)."""
    kept = []
    for seg in segments:
        if seg.end - seg.start < tol:
            continue
        if any(abs(seg.start - k.start) <= tol and abs(seg.end - k.end) <= tol
               and _class_key(seg) == _class_key(k) for k in kept):
            continue
        kept.append(seg)
    return kept


def _class_key(seg):
    return seg.label_id if seg.label_id is not None else seg.label


class FeatureDataset(Dataset):
    """Base class: an ActivityNet-style annotation JSON plus one feature file per video.

    Keyword names follow the ``dataset`` section of the release's YAML configs.
    """
    skip_missing_features = True   # the release skips such videos (THUMOS14, Ego4D)
    remove_duplicates = False
    tiou_thresholds = (0.3, 0.4, 0.5, 0.6, 0.7)

    def __init__(self, json_file, feat_folder, split=('training', ), is_training=True,
                 feat_stride=16, num_frames=32, default_fps=None, downsample_rate=1,
                 max_seq_len=2304, trunc_thresh=0.5, crop_ratio=None, input_dim=2048,
                 num_classes=20, file_prefix=None, file_ext='.npy', force_upsampling=False):
        if isinstance(split, str):
            split = (split, )
        if crop_ratio is not None and len(crop_ratio) != 2:
            raise ValueError(f'crop_ratio must be None or (low, high), got {crop_ratio!r}')
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f'annotation file not found: {json_file}')
        self.json_file = json_file
        self.feat_folders = self._folders(feat_folder)
        self.split = tuple(s.lower() for s in split)
        self.is_training = is_training
        self.feat_stride = feat_stride
        self.num_frames = num_frames
        self.default_fps = default_fps
        self.downsample_rate = downsample_rate
        self.max_seq_len = max_seq_len
        self.trunc_thresh = trunc_thresh
        self.crop_ratio = crop_ratio
        self.input_dim = input_dim
        self.num_classes = num_classes
        self.file_prefix = file_prefix or ''
        self.file_ext = file_ext
        self.force_upsampling = force_upsampling
        self.videos, self.label_map = self._load_videos()
        self.label_names = {idx: name for name, idx in self.label_map.items()}
        self.empty_label_ids = self._find_empty_classes()

    # ------------------------------------------------------------------ set-up
    def _folders(self, feat_folder):
        folders = [feat_folder] if isinstance(feat_folder, str) else list(feat_folder)
        for folder in folders:
            if not os.path.isdir(folder):
                raise FileNotFoundError(f'feature folder not found: {folder}')
        return folders

    def feature_files(self, video_id):
        return feature_file_paths(self.feat_folders, self.file_prefix, video_id, self.file_ext)

    def _load_videos(self):
        """Videos of the split as plain dicts (segments in seconds) and the label map."""
        from .annotations import load_annotations
        database = _read_database(self.json_file)
        check_splits(database, self.split, self.json_file)
        label_map = _label_map(database, self.json_file)
        self._check_num_classes(label_map)
        annotations = {}
        for subset in self.split:
            annotations.update(load_annotations(self.json_file, subset=subset))
        videos, missing = [], []
        for video_id in database:  # file order, as the release
            if video_id not in annotations:
                continue
            if not all(os.path.isfile(f) for f in self.feature_files(video_id)):
                missing.append(video_id)
                continue
            videos.append(self._video_record(annotations[video_id], label_map))
        self._report_missing(missing, len(videos))
        return videos, label_map

    def _check_num_classes(self, label_map):
        if len(label_map) != self.num_classes:
            raise ValueError(f'{self.json_file}: {len(label_map)} classes in the annotations, '
                             f'but num_classes={self.num_classes}')

    def _report_missing(self, missing, num_kept):
        if not missing:
            return
        listed = ', '.join(missing[:5]) + (', ...' if len(missing) > 5 else '')
        where = ' + '.join(self.feat_folders)
        if not self.skip_missing_features:
            raise FeatureFileError(f'{len(missing)} videos of split {self.split} have no feature '
                                   f'file in {where}: {listed}')
        logger.warning('skipped %d videos of split %s without feature files in %s (%s); '
                       '%d videos kept', len(missing), self.split, where, listed, num_kept)

    def video_fps(self, ann):
        """Frame rate of a video: ``default_fps`` when set (it overrides the annotation, as in
        the release), else the annotation's ``fps``."""
        return self.default_fps if self.default_fps is not None else ann.fps

    def _video_record(self, ann, label_map):
        fps = self.video_fps(ann)
        if fps is None:
            raise ValueError(f'{self.json_file}: video {ann.video_id!r} has no "fps" and the '
                             'dataset has no default_fps: add one of them')
        duration = ann.duration if ann.duration is not None else UNKNOWN_DURATION
        segments = [s for s in ann.segments if s.end > s.start]  # zero-length: no target
        if self.remove_duplicates:
            segments = drop_duplicate_segments(segments)
        if segments:
            seg_array = np.asarray([[s.start, s.end] for s in segments], dtype=np.float32)
            labels = np.asarray([self._label_id(s, label_map) for s in segments], dtype=np.int64)
        else:
            seg_array, labels = None, None
        return dict(id=ann.video_id, fps=fps, duration=duration, segments=seg_array,
                    labels=labels)

    def _label_id(self, segment, label_map):
        return label_map[segment.label]

    def _find_empty_classes(self):
        present = set(self.label_map.values())
        return [i for i in range(self.num_classes) if i not in present]

    # ------------------------------------------------------------------ items
    def __len__(self):
        return len(self.videos)

    def array_key(self, path):
        """Name of the array inside a ``.npz`` feature file; None for ``.npy``."""
        return None

    def load_features(self, video_id):
        """(T, C) float32 array of one video; several feature folders are concatenated on
        channels (every file of a video must have the same length)."""
        paths = self.feature_files(video_id)
        dims = self.per_folder_dims()
        arrays = [self._checked(video_id, p, _read_array(p, video_id, self.array_key(p)), d)
                  for p, d in zip(paths, dims)]
        if len(arrays) == 1:
            return arrays[0]
        lengths = {p: a.shape[0] for p, a in zip(paths, arrays)}
        if len(set(lengths.values())) > 1:
            raise FeatureFileError(f'video {video_id}: feature types differ in length: '
                                   + ', '.join(f'{p}: {n}' for p, n in lengths.items()))
        feats = np.concatenate(arrays, axis=1)
        return self._checked(video_id, ' + '.join(paths), feats)

    def per_folder_dims(self):
        """Expected width of each folder's files; -1 where only the total can be checked."""
        return folder_dims(self.input_dim, len(self.feat_folders))

    def _checked(self, video_id, path, feats, expected_dim=None):
        if expected_dim == -1:
            if feats.ndim != 2 or feats.shape[0] == 0:
                raise FeatureFileError(f'video {video_id}: features in {path} have shape '
                                       f'{feats.shape}, expected (T, C)')
            return check_finite(feats.astype(np.float32), video_id, path)
        expected_dim = expected_dim if expected_dim is not None else _total_dim(self.input_dim)
        if feats.ndim != 2 or feats.shape[1] != expected_dim:
            raise FeatureFileError(f'video {video_id}: features in {path} have shape '
                                   f'{feats.shape}, expected (T, {expected_dim})')
        if feats.shape[0] == 0:
            raise FeatureFileError(f'video {video_id}: features in {path} are empty')
        return check_finite(feats.astype(np.float32), video_id, path)

    def __getitem__(self, idx):
        video = self.videos[idx]
        feats = self.load_features(video['id'])
        feats = feats[::self.downsample_rate]
        feat_stride = self.feat_stride * self.downsample_rate
        item = self._make_item(video, feats, feat_stride, self.num_frames)
        return self._maybe_crop(item)

    def _make_item(self, video, feats, feat_stride, num_frames):
        offset = 0.5 * num_frames / feat_stride
        if video['segments'] is not None:
            segments = torch.from_numpy(video['segments'] * video['fps'] / feat_stride - offset)
            labels = torch.from_numpy(video['labels'])
        else:
            segments, labels = None, None
        return {'video_id': video['id'],
                'feats': torch.from_numpy(np.ascontiguousarray(feats.T)),  # C, T
                'segments': segments,   # N, 2 in feature steps
                'labels': labels,       # N
                'fps': video['fps'],
                'duration': video['duration'],
                'feat_stride': feat_stride,
                'feat_num_frames': num_frames}

    def _maybe_crop(self, item):
        if not self.is_training or item['segments'] is None:
            return item
        offset = 0.5 * item['feat_num_frames'] / item['feat_stride']
        return crop_item(item, self.max_seq_len, self.trunc_thresh, offset, self.crop_ratio)


def _read_database(json_file):
    from .annotations import _read_database as read_annotation_database
    return read_annotation_database(json_file)


def check_splits(database, splits, json_file):
    """Every requested split must name videos of the file (a typo would train on nothing)."""
    counts = {}
    for entry in database.values():
        subset = entry.get('subset') if isinstance(entry, dict) else None
        if isinstance(subset, str):
            counts[subset.lower()] = counts.get(subset.lower(), 0) + 1
    unknown = [s for s in splits if s.lower() not in counts]
    if unknown:
        present = ', '.join(f'{name!r} ({n} videos)' for name, n in sorted(counts.items()))
        raise AnnotationError(f'{json_file}: no video has subset {unknown} (the file has '
                              f'{present or "no subsets"}); fix the dataset\'s split')
    return counts


def _label_map(database, json_file):
    """Label name -> id over every video of the file (all subsets), from ``label_id`` as the
    release does (one to one with names, else an error); if some action has no ``label_id``,
    sorted names are numbered instead."""
    actions = [act for entry in database.values() if isinstance(entry, dict)
               for act in (entry.get('annotations') or []) if isinstance(act, dict)]
    if actions and all('label_id' in act for act in actions):
        return label_map_from_ids(((act.get('label'), int(act['label_id'])) for act in actions),
                                  json_file)
    from .annotations import build_label_map, load_annotations
    return build_label_map(load_annotations(json_file, strict=False).values(), json_file)


def check_finite(feats, video_id, path):
    """``feats`` unchanged when every value is finite, else FeatureFileError naming the file."""
    finite = np.isfinite(feats)
    if not finite.all():
        bad = np.argwhere(~finite)
        step, channel = (int(x) for x in bad[0][:2])
        raise FeatureFileError(
            f'video {video_id}: features in {path} hold {len(bad)} NaN/inf value(s) (first at '
            f'step {step}, channel {channel}); the file is corrupt or came from a failed '
            'extraction: extract it again')
    return feats


def read_feature_shape(path, key=None):
    """Shape of the array stored in a ``.npy`` file (or array ``key`` of a ``.npz``), from the
    header only: no data is read. Raises FeatureFileError naming the file."""
    try:
        if key is None:
            return tuple(np.load(path, mmap_mode='r').shape)
        with zipfile.ZipFile(path) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith('.npy')]
            if key not in names:
                raise FeatureFileError(f'{path} has no array {key!r} (found {names})')
            with archive.open(key + '.npy') as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                return tuple(read_header(member)[0])
    except FeatureFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise FeatureFileError(f'cannot read features {path}: {err}') from err


def feature_file_paths(folders, prefix, video_id, ext):
    """The feature file of ``video_id`` in each folder: ``<folder>/<prefix><id><ext>``."""
    name = (prefix or '') + video_id + ext
    return [os.path.join(folder, name) for folder in folders]


def folder_dims(input_dim, num_folders):
    """Expected width of each folder's files; -1 where only the total can be checked."""
    if isinstance(input_dim, (list, tuple)) and len(input_dim) == num_folders:
        return list(input_dim)
    if num_folders == 1:
        return [_total_dim(input_dim)]
    return [-1] * num_folders


def _total_dim(input_dim):
    return sum(input_dim) if isinstance(input_dim, (list, tuple)) else input_dim


def _read_array(path, video_id, key=None):
    try:
        if key is None:
            return np.load(path)
        with np.load(path) as archive:
            if key not in archive:
                raise FeatureFileError(f'video {video_id}: {path} has no array {key!r} '
                                       f'(found {list(archive.keys())})')
            return archive[key]
    except FeatureFileError:
        raise
    except (OSError, ValueError) as err:
        raise FeatureFileError(f'video {video_id}: cannot read features {path}: {err}') from err


@DATASETS.register_module()
class Thumos14FeatureDataset(FeatureDataset):
    """THUMOS14 I3D features (``.npy``, T x C); videos without features are skipped."""


@DATASETS.register_module()
class EpicKitchensFeatureDataset(FeatureDataset):
    """EPIC-Kitchens-100 SlowFast features: ``.npz`` archives with the array ``feats``.

    Some noun classes never occur; they are listed in ``empty_label_ids`` (the model gives
    them a very negative classifier bias).
    """
    skip_missing_features = False
    tiou_thresholds = (0.1, 0.2, 0.3, 0.4, 0.5)

    def __init__(self, *args, file_ext='.npz', **kwargs):
        super().__init__(*args, file_ext=file_ext, **kwargs)

    def _check_num_classes(self, label_map):
        if len(label_map) > self.num_classes:
            raise ValueError(f'{self.json_file}: {len(label_map)} classes in the annotations, '
                             f'more than num_classes={self.num_classes}')

    def array_key(self, path):
        return 'feats'


@DATASETS.register_module()
class Ego4DFeatureDataset(FeatureDataset):
    """Ego4D moment queries: one or more feature types, concatenated on channels.

    ``feat_folder`` may be a list (e.g. SlowFast + Omnivore + EgoVLP); every video needs a
    file in each folder and all of them must have the same length. ``input_dim`` is the total
    channel count or, per feature type, a list (then each file's width is checked).
    """
    tiou_thresholds = (0.1, 0.2, 0.3, 0.4, 0.5)


@DATASETS.register_module()
class ActivityNetFeatureDataset(FeatureDataset):
    """ActivityNet-1.3 features (``.npy``), usually resampled to a fixed length.

    Duplicate / zero-length ground truth is removed. With ``force_upsampling`` every video is
    linearly interpolated to ``max_seq_len`` steps, and the feature stride is recomputed so
    that the resampled steps still cover the video (as in the release). ``num_classes=1``
    trains class-agnostic proposals (labels all 0); ``label_names`` keeps the real classes for
    fusion with an external video classifier.
    """
    skip_missing_features = False
    remove_duplicates = True
    tiou_thresholds = tuple(np.round(np.linspace(0.5, 0.95, 10), 2).tolist())

    def _check_num_classes(self, label_map):
        if self.num_classes != 1 and len(label_map) != self.num_classes:
            super()._check_num_classes(label_map)

    def _label_id(self, segment, label_map):
        return 0 if self.num_classes == 1 else label_map[segment.label]

    def __getitem__(self, idx):
        video = self.videos[idx]
        feats = self.load_features(video['id'])  # T, C
        feats, feat_stride, num_frames = self._resample_grid(video, feats)
        item = self._make_item(video, feats, feat_stride, num_frames)
        if self.force_upsampling and item['feats'].shape[1] != self.max_seq_len:
            item['feats'] = F.interpolate(item['feats'][None], size=self.max_seq_len,
                                          mode='linear', align_corners=False)[0]
        if self.is_training and item['segments'] is not None:
            item = self._drop_outside(item)
        return self._maybe_crop(item)

    def _resample_grid(self, video, feats):
        """(features, feature stride in frames, frames per step) for the three cases."""
        if self.feat_stride > 0 and not self.force_upsampling:
            feats = feats[::self.downsample_rate]
            return feats, self.feat_stride * self.downsample_rate, self.num_frames
        if self.feat_stride > 0:
            # variable-length input stretched to max_seq_len: each step now covers this much
            stride = float((feats.shape[0] - 1) * self.feat_stride + self.num_frames) \
                / self.max_seq_len
            return feats, stride, stride
        # fixed-length input: the steps tile the whole video
        if feats.shape[0] > self.max_seq_len:
            raise FeatureFileError(f'video {video["id"]}: {feats.shape[0]} fixed-length feature '
                                   f'steps, more than max_seq_len={self.max_seq_len}')
        seq_len = self.max_seq_len if self.force_upsampling else feats.shape[0]
        stride = video['duration'] * video['fps'] / seq_len
        return feats, stride, stride

    def _drop_outside(self, item):
        """Training only: drop actions mostly past the features' end (videos missing frames)."""
        offset = 0.5 * item['feat_num_frames'] / item['feat_stride']
        video_len = item['feats'].shape[1] + offset
        segments, labels = item['segments'], item['labels']
        starts, ends = segments[:, 0], segments[:, 1]
        inside = (torch.clamp(ends, max=video_len) - starts) / (ends - starts)
        keep = (starts < video_len) & (inside >= self.trunc_thresh)
        item = dict(item)
        item['segments'] = segments[keep].clamp(max=video_len)
        item['labels'] = labels[keep]
        return item
