"""Detect actions in new videos (or feature files) with a trained checkpoint.

No annotation file, dataset path or duration is needed: each input is measured, a
temporary annotation-free dataset of the config's validation type is built over links to the
inputs, and the same loader, model and ``predict_dataset`` as ``tools/test.py`` produce the
detections, so a validation video gets the same detections from both tools. What inference
needs (class names, the model's frame rate, feature stride) comes from the checkpoint's
``meta`` (vedatad checkpoints), else from the config and ``class_names``.

Inputs: video files (any container the readers open) or folders of them; for feature-based
checkpoints ``.npy`` files (T, C), videos, or folders of them. A feature-based checkpoint
trained on features that vedatad extracted (``extract_features --export-npy``) records how
(``meta.data.extraction``): its videos are extracted the same way (``extract.extract_npy``,
the extraction job's own code) into the temporary folder, and then take the ``.npy`` path,
so a video gets the detections of its exported ``.npy``; when those features were read from
frame folders, the video's frames are first made with the recorded frame settings (the
frame extraction's own ``extract_frames``). ``.npy`` files and videos may be mixed. The
top-level config key ``feature_extractor`` (an extraction config) names the extractor for
checkpoints that record none, or other weights paths for the recorded one (checked: the
same settings and weights hash). Without either, videos are refused (external features
such as I3D cannot be computed here). An input that cannot be used is refused in
one line naming it, and the others are still processed.
"""
import json
import os
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np

from ..registry import DATASETS, MODELS
from . import dist as dist_utils
from .checkpoint import load_checkpoint, load_model_weights
from .config_schema import dataloader_section
from .dataloader import build_dataloader
from .inference import predict_dataset, to_submission
from .runtime import configure_cpu, seed_everything

FEATURE_EXTS = ('.npy', )
SUBSET = 'inference'
CLASSES_RECORD = '__classes__'


class InferenceError(ValueError):
    """Inference cannot run at all (no usable input, no class names, ...)."""


@dataclass
class InferenceReport:
    submission: dict = field(default_factory=dict)   # video id -> detections
    durations: dict = field(default_factory=dict)    # video id -> seconds
    refused: dict = field(default_factory=dict)      # input path -> reason


def is_video_model(cfg):
    """End-to-end models (TALLFormer) read videos; ActionFormer reads features."""
    return 'backbone' in cfg.model and 'detector' in cfg.model


def input_kinds(video_model):
    """(what a checkpoint reads, in words; the file extensions it takes)."""
    from ..data.video_dataset import VIDEO_EXTS
    if video_model:
        return 'videos', VIDEO_EXTS
    return '.npy feature files or videos', FEATURE_EXTS + VIDEO_EXTS


def collect_inputs(inputs, kinds):
    """Files named or inside the named folders (sorted, not recursive), in order; and
    {path: reason} for inputs that do not exist or have another type. ``kinds``: as
    ``input_kinds`` gives."""
    what, exts = kinds
    files, refused = [], {}
    for item in inputs:
        item = os.path.abspath(os.path.expanduser(str(item)))
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if os.path.splitext(n)[1].lower() in exts
                           and os.path.isfile(os.path.join(item, n)))
            if not found:
                refused[item] = f'a folder without {what}'
            files += found
        elif not os.path.exists(item):
            refused[item] = 'no such file or folder'
        elif os.path.splitext(item)[1].lower() not in exts:
            refused[item] = f'not one of the {what} this checkpoint reads ({"/".join(exts)})'
        else:
            files.append(item)
    return files, refused


def unique_ids(files, refused):
    """Video id (file stem) -> path; a stem given twice is refused for both files."""
    by_id = {}
    for path in files:
        by_id.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    out = {}
    for vid, paths in by_id.items():
        if len(set(paths)) > 1:
            for p in paths:
                refused[p] = f'video id {vid!r} is also the name of {", ".join(set(paths) - {p})}'
        else:
            out[vid] = paths[0]
    return out


def measure_features(path, stride, num_frames, fps):
    """Seconds covered by a (T, C) feature file: up to the end of the last step's clip."""
    try:
        arr = np.load(path, mmap_mode='r', allow_pickle=False)
    except Exception as err:
        raise ValueError(f'not a readable .npy array ({err})') from None
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise ValueError(f'expected a (T, C) array, got shape {tuple(arr.shape)}')
    return ((int(arr.shape[0]) - 1) * stride + num_frames) / fps


def inference_facts(checkpoint, cfg, class_names=None):
    """Class names and the data facts (fps, feat_stride, feat_num_frames) for inference."""
    meta = checkpoint.get('meta') or {}
    names = list(class_names) if class_names else [n for n in (meta.get('classes') or [])]
    if not names:
        names = list(cfg.val_dataset.get('class_names') or [])
    if not names:
        raise InferenceError('the checkpoint names no classes (not written by vedatad?): '
                             'give --class-names FILE_OR_LIST')
    names = [str(n) if n is not None else str(i) for i, n in enumerate(names)]
    return names, dict(meta.get('data') or {})


def _link_inputs(ids, folder, ext_of):
    os.makedirs(folder)
    for vid, path in ids.items():
        os.symlink(path, os.path.join(folder, vid + ext_of(path)))


def _write_database(tmp, database):
    path = os.path.join(tmp, 'inputs.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'database': database}, f)
    return path


def _video_dataset_cfg(cfg, ids, facts, names, tmp, refused):
    from ..data.annotation_skeleton import measure_video, skeleton_entry
    fps_model = facts.get('fps') or cfg.val_dataset.get('sample_fps')
    database = {}
    for vid, path in ids.items():
        try:
            database[vid] = skeleton_entry(measure_video(vid, path), SUBSET)
        except Exception as err:  # the readers' and their libraries' errors alike
            refused[path] = str(err)
    folder = os.path.join(tmp, 'videos')
    _link_inputs({v: ids[v] for v in database}, folder,
                 lambda p: os.path.splitext(p)[1].lower())
    ds = dict(cfg.val_dataset, ann_file=_write_database(tmp, database), data_prefix=folder,
              subset=SUBSET, mode='test', class_names=names, fps=None, sample_fps=fps_model,
              lazy_windows=True)
    if cfg.val_dataset.get('backend') in (None, 'auto', 'frames'):
        ds.pop('backend', None)  # the inputs are files: the readers' choice for files
    return ds, {v: entry['duration'] for v, entry in database.items()}


def _feature_dataset_cfg(cfg, ids, facts, names, tmp, refused, fps_of=None):
    """``fps_of``: {video id: frame rate} of features whose rate is known per video (those
    extracted here), else the checkpoint's rate."""
    val = cfg.val_dataset
    rate = int(val.get('downsample_rate') or 1)
    stride = facts.get('feat_stride') or (val.get('feat_stride') or 0) * rate
    num_frames = facts.get('feat_num_frames') or val.get('num_frames')
    fps = facts.get('fps') or val.get('default_fps')
    fps_of = {vid: (fps_of or {}).get(vid) or fps for vid in ids}
    if not (stride and num_frames and all(fps_of.values())):
        raise InferenceError('feature stride, frames per step and frame rate are unknown: the '
                             'checkpoint does not record them; set val_dataset.feat_stride, '
                             '.num_frames and .default_fps with --cfg-options')
    database, good = {}, {}
    for vid, path in ids.items():
        try:
            duration = measure_features(path, stride, num_frames, fps_of[vid])
        except ValueError as err:
            refused[path] = str(err)
            continue
        good[vid] = path
        database[vid] = dict(subset=SUBSET, duration=duration, fps=fps_of[vid],
                             annotations=[])
    if good:
        # feature datasets number classes from the file's labels: one record outside the
        # inference split names the checkpoint's classes with their ids
        database[CLASSES_RECORD] = dict(subset='classes', duration=1.0, fps=fps, annotations=[
            dict(label=name, label_id=i, segment=[0.0, 1.0]) for i, name in enumerate(names)])
    folder = os.path.join(tmp, 'features')
    _link_inputs(good, folder, lambda p: '.npy')
    ds = dict(val, json_file=_write_database(tmp, database), feat_folder=folder,
              split=[SUBSET], is_training=False, feat_stride=stride // rate,
              num_frames=num_frames, default_fps=fps,
              num_classes=len(names), file_prefix=None, file_ext='.npy')
    ds.pop('ext_score_file', None)
    return ds, {v: database[v]['duration'] for v in good}


NO_EXTRACTOR = ('a video, but the features this checkpoint was trained on were not extracted '
                'by vedatad (no extraction record): pass its .npy features instead, or name '
                'the extraction config that made them (--cfg-options feature_extractor=CONFIG)')
FROM_FRAME_FOLDERS = ('a video, but the training features were extracted from frame folders '
                      'whose frames a video cannot repeat: {why}; extract its frames and '
                      'features the same way (extract_frames.py, extract_features.py '
                      '--export-npy) and pass the .npy')
FROM_MIXED_SOURCES = ('a video, but the training features were extracted from video files and '
                      'frame folders together: extract its features the same way '
                      '(extract_features.py --export-npy) and pass the .npy')


def feature_extractor(cfg, facts):
    """(Extraction that computes the checkpoint's features from a video, None) or (None,
    why no video can be used). The config's ``feature_extractor`` (an extraction config)
    wins over the checkpoint's record, and must give the recorded settings."""
    from .extract import Extraction
    record = facts.get('extraction')
    try:
        recorded = Extraction.from_record(record) if record else None
    except (KeyError, TypeError, ValueError) as err:
        raise InferenceError(f"the checkpoint's meta.data.extraction is unreadable ({err!r}); "
                             'videos cannot be extracted as its features were: pass .npy '
                             'features instead') from None
    named = cfg.get('feature_extractor')
    extraction = recorded
    if named:
        from .config_loader import load_config
        try:
            extraction = Extraction.from_config(load_config(named))
        except (OSError, ValueError) as err:  # missing file, bad keys
            raise InferenceError(f'feature_extractor={named}: {err}') from None
        if recorded is not None:  # what the features were computed from stays recorded
            extraction = replace(recorded, data=extraction.data, backbone=extraction.backbone,
                                 extract=extraction.extract)
    if extraction is None:
        return None, NO_EXTRACTOR
    if extraction.source == 'mixed':
        return None, FROM_MIXED_SOURCES
    if extraction.from_frame_folders() and not extraction.frames:
        return None, FROM_FRAME_FOLDERS.format(why=extraction.frames_unrepeatable)
    return extraction, None


def _features_of_inputs(cfg, facts, ids, tmp, refused, device, progress):
    """Feature files for the inputs ({video id: .npy or video file}): the videos' features
    are extracted into ``tmp`` as the training features were made. Returns ({video id:
    .npy file}, {video id: frame rate of its extracted features}); videos that cannot be
    used go to ``refused``."""
    videos = {v: p for v, p in ids.items() if not p.lower().endswith(FEATURE_EXTS)}
    features = {v: p for v, p in ids.items() if v not in videos}
    if not videos:
        return features, {}
    extraction, reason = feature_extractor(cfg, facts)
    if extraction is None:
        refused.update({path: reason for path in videos.values()})
        return features, {}
    from .extract import ExtractorError, extract_npy
    out = os.path.join(tmp, 'extracted')
    try:
        summary = extract_npy(extraction, videos, out, device, progress)
    except ExtractorError as err:
        named = cfg.get('feature_extractor')
        raise InferenceError(f'feature_extractor={named}: {err}' if named else
                             f'{err}; give the weights the training features were made with, '
                             'there or in an extraction config: --cfg-options '
                             'feature_extractor=CONFIG') from None
    for vid, why in summary.failed.items():
        refused[videos[vid]] = why
    features.update({vid: os.path.join(out, f'{vid}.npy') for vid in summary.done})
    return {v: features[v] for v in ids if v in features}, summary.fps  # in input order


TRAINED_SECTIONS = ('model', 'val_dataset', 'val_dataloader')


def adopt_trained_config(cfg, checkpoint, options=None):
    """The model and validation sections the checkpoint was trained with (its recorded,
    resolved config), so CONFIG need not repeat training-time ``--cfg-options``; this
    run's options on those sections still apply. Without a recorded config: ``cfg``."""
    text = (checkpoint.get('meta') or {}).get('config')
    if not isinstance(text, str) or not text.strip():
        return cfg
    from mmengine.config import Config
    try:
        saved = Config.fromstring(text, '.py')
    except Exception:  # an unreadable record: the given config is all there is
        return cfg
    for key in TRAINED_SECTIONS:
        if key in saved:
            cfg[key] = saved[key]
    again = {k: v for k, v in (options or {}).items() if k.split('.')[0] in TRAINED_SECTIONS}
    if again:
        cfg.merge_from_dict(again)
    return cfg


def keep_above(submission, threshold):
    if threshold is None:
        return submission
    return {v: [d for d in dets if d['score'] >= threshold] for v, dets in submission.items()}


def infer(cfg, checkpoint_path, inputs, score_threshold=None, class_names=None,
          use_ema=True, progress=True, logger=None, options=None):
    """Detections for ``inputs``: an InferenceReport (submission keyed by file stem).
    ``options``: this run's ``--cfg-options`` (re-applied over the trained sections)."""
    checkpoint = load_checkpoint(checkpoint_path)
    cfg = adopt_trained_config(cfg, checkpoint, options)
    names, facts = inference_facts(checkpoint, cfg, class_names)
    video = is_video_model(cfg)
    files, refused = collect_inputs(inputs, input_kinds(video))
    ids = unique_ids(files, refused)
    report = InferenceReport(refused=refused)
    info = dist_utils.init_distributed(cfg.get('device'))
    configure_cpu(cfg)
    seed_everything(0, deterministic=True)
    with tempfile.TemporaryDirectory(prefix='vedatad_infer_') as tmp:
        if video:
            ds_cfg, durations = _video_dataset_cfg(cfg, ids, facts, names, tmp, refused)
        else:
            ids, fps_of = _features_of_inputs(cfg, facts, ids, tmp, refused, info.device,
                                              progress)
            ds_cfg, durations = _feature_dataset_cfg(cfg, ids, facts, names, tmp, refused,
                                                     fps_of)
        if not durations:
            return report
        dataset = DATASETS.build(ds_cfg)
        loader_cfg = dict(dataloader_section(cfg, 'val_dataloader'), num_workers=0)
        loader = build_dataloader(dataset, loader_cfg, False, 0, info.rank, info.world_size)
        model = MODELS.build(cfg.model).to(info.device)
        load_model_weights(model, checkpoint_path, use_ema=use_ema, logger=logger)
        results = predict_dataset(model, loader, desc='infer', progress=progress)
    label_names = dict(enumerate(names))
    report.submission = keep_above(to_submission(results, label_names), score_threshold)
    report.durations = durations
    return report
