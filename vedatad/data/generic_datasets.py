"""Datasets for your own data: any ActivityNet-style JSON, any split names, any frame rate.

``GenericFeatureDataset``: one feature file per video (``.npy`` or ``.npz``), any feature
stride and clip length. ``GenericVideoDataset``: video files or frame folders for end-to-end
training (the ``VideoDataset`` pipeline under a name that promises nothing about THUMOS).

Annotation file (``tools/data/make_annotations.py`` writes the skeleton, ``import_csv.py``
fills it)::

    {"database": {"<video_id>": {"subset": "training", "duration": 12.5, "fps": 30.0,
                                 "annotations": [{"segment": [1.2, 3.4], "label": "jump"}]}}}

Keys that matter: ``subset`` (any name; the dataset's ``split`` / ``subset`` picks them),
``duration`` (seconds), ``fps`` (frames per second of the video the features were computed
from), ``segment`` ([start, end] seconds), ``label``; ``label_id`` is optional (when given,
it must be one id per label). Everything else is ignored.

The model facts (number of classes, feature size, ``max_seq_len``) are written once, here:
``vedatad.engine.config_resolve`` gives them to the model.
"""
import os
import warnings

from ..registry import DATASETS
from .annotations import AnnotationError, load_annotations
from .feature_datasets import FeatureDataset, FeatureFileError, read_feature_shape
from .video_dataset import VideoDataset

FEATURES_INFO = 'features_info.json'  # written by tools/data/extract_features.py --export-npy


def _features_info(folders):
    """Contents of ``features_info.json`` in the first feature folder, or {}."""
    path = os.path.join(folders[0], FEATURES_INFO)
    if not os.path.isfile(path):
        return {}
    from ..utils.io import read_json
    info = read_json(path, FeatureFileError)
    return info if isinstance(info, dict) else {}


@DATASETS.register_module()
class GenericFeatureDataset(FeatureDataset):
    """Your own pre-extracted features: ``feat_folder/<file_prefix><video_id><file_ext>``.

    Args:
        json_file: ActivityNet-style annotation JSON (see the module docstring).
        feat_folder: folder of feature files, or a list of folders whose files are
            concatenated on channels (same length per video).
        split: subset name(s) to use, as written in the JSON (any names; a name that no video
            has is an error listing the names that exist).
        is_training: random crops of at most ``max_seq_len`` steps (training) or whole videos.
        feat_stride: frames between two consecutive feature steps.
        num_frames: frames seen by one feature step (its clip length). Step ``i`` is
            centred on frame ``i * feat_stride + num_frames / 2``. Both come from
            ``features_info.json`` in the feature folder when not given (features exported by
            ``tools/data/extract_features.py --export-npy`` have one; its ``extraction``
            record, kept as ``self.extraction``, lets inference extract new videos the same
            way).
        default_fps: frame rate for videos whose annotation has no ``fps`` (the annotation's
            own ``fps`` always wins).
        max_seq_len: longest training crop in steps; the model's input length (it must fit the
            model's pyramid: the config check states the valid values).
        input_dim: feature size; None: measured from the first file (every file is checked).
        num_classes: None: the number of labels in the JSON; if given it must match.
        file_ext: '.npy' (T, C) or '.npz' holding array ``npz_key`` (T, C).
        missing: 'error' (default): a video of the split without a feature file is an error;
            'skip': such videos are left out with a warning.
        downsample_rate, trunc_thresh, crop_ratio, file_prefix: as ``FeatureDataset``.
    """

    def __init__(self, json_file, feat_folder, split, is_training=True, feat_stride=None,
                 num_frames=None, default_fps=None, downsample_rate=1, max_seq_len=2304,
                 trunc_thresh=0.5, crop_ratio=None, input_dim=None, num_classes=None,
                 file_prefix=None, file_ext='.npy', npz_key='feats', missing='error'):
        if missing not in ('error', 'skip'):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        if file_ext not in ('.npy', '.npz'):
            raise ValueError(f"file_ext must be '.npy' or '.npz', got {file_ext!r}")
        self.skip_missing_features = missing == 'skip'
        self.npz_key = npz_key
        folders = self._folders(feat_folder)
        info = _features_info(folders)
        feat_stride = feat_stride if feat_stride is not None else info.get('feat_stride')
        num_frames = num_frames if num_frames is not None else info.get('feat_num_frames')
        if feat_stride is None or num_frames is None:
            raise ValueError(
                f'{folders[0]}: set the dataset\'s feat_stride (frames between two feature '
                'steps) and num_frames (frames per feature step), or put a '
                f'{FEATURES_INFO} with feat_stride and feat_num_frames in the feature folder')
        if default_fps is None:
            default_fps = info.get('fps')
        if input_dim is None and info.get('feat_dim') and len(folders) == 1:
            input_dim = int(info['feat_dim'])
        super().__init__(json_file, feat_folder, split=split, is_training=is_training,
                         feat_stride=feat_stride, num_frames=num_frames,
                         default_fps=default_fps, downsample_rate=downsample_rate,
                         max_seq_len=max_seq_len, trunc_thresh=trunc_thresh,
                         crop_ratio=crop_ratio, input_dim=input_dim, num_classes=num_classes,
                         file_prefix=file_prefix, file_ext=file_ext)
        if self.input_dim is None:
            self.input_dim = self.measure_input_dim()
        # how the features were computed (features exported by vedatad), for the checkpoint:
        # inference can then compute the same features for new videos
        self.extraction = info.get('extraction') if len(folders) == 1 else None

    def array_key(self, path):
        return self.npz_key if str(path).endswith('.npz') else None

    def _check_num_classes(self, label_map):
        if self.num_classes is None:
            self.num_classes = len(label_map)
        super()._check_num_classes(label_map)

    def video_fps(self, ann):
        """The annotation's ``fps``; ``default_fps`` only for videos without one."""
        return ann.fps if ann.fps is not None else self.default_fps

    def measure_input_dim(self):
        """Feature size from the first video's file header(s): the total over the folders
        (the model then projects the concatenation as one input)."""
        if not self.videos:
            raise FeatureFileError(f'{self.json_file}: no video of split {list(self.split)} '
                                   'has a feature file; cannot measure input_dim')
        video_id = self.videos[0]['id']
        dims = []
        for path in self.feature_files(video_id):
            shape = read_feature_shape(path, self.array_key(path))
            if len(shape) != 2:
                raise FeatureFileError(f'video {video_id}: features in {path} have shape '
                                       f'{shape}, expected (T, C)')
            dims.append(int(shape[1]))
        return sum(dims)


@DATASETS.register_module()
class GenericVideoDataset(VideoDataset):
    """Your own videos for end-to-end training: ``data_prefix/<video_id>.<ext>`` video files
    or ``data_prefix/<video_id>/`` frame folders (``tools/data/extract_frames.py``).

    The keys that matter (all ``VideoDataset`` arguments are accepted):
        ann_file: ActivityNet-style annotation JSON (``tools/data/make_annotations.py``).
        data_prefix: the video folder.
        subset: the split to use, as written in the JSON (a name no video has is an error
            listing the names that exist).
        mode: 'train' (one random window per video per step) or 'test' (every window).
        window_size: frames per window, a multiple of 32 (the memory bank's chunk).
        sample_fps: read every video at this frame rate (None: the videos' own rate, or a
            frame folder's ``meta.json``); must equal the memory bank's rate.
        pipeline_cfg: ``short_side`` (resize), ``crop_size``, ``overlap`` (test windows),
            ``min_coverage``, ``photometric`` (see ``default_video_pipeline``).
        lazy_windows: test mode decodes one window at a time (default True in test mode:
            bounded memory for long videos).
    """

    def __init__(self, ann_file, data_prefix, subset, mode='train', window_size=None,
                 lazy_windows=None, **kwargs):
        _check_subset(ann_file, subset)
        if lazy_windows is None:
            lazy_windows = mode == 'test' and kwargs.get('pipeline') is None
        super().__init__(ann_file, data_prefix, subset=subset, mode=mode,
                         window_size=window_size, lazy_windows=lazy_windows, **kwargs)


def _check_subset(ann_file, subset):
    if not os.path.isfile(str(ann_file)):
        raise FileNotFoundError(f'annotation file not found: {ann_file}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the dataset itself reports what it loads
        videos = load_annotations(ann_file)
    names = sorted({v.subset.lower() for v in videos.values()})
    if subset is None or str(subset).lower() not in names:
        raise AnnotationError(f'{ann_file}: no video has subset {subset!r} (the file has '
                              f'{names or "no subsets"}); fix the dataset\'s subset')


__all__ = ['FEATURES_INFO', 'GenericFeatureDataset', 'GenericVideoDataset']
