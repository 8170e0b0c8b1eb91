"""Checks of a config against its data, all problems at once, before any work is done.

``check_config(cfg, mode, work_dir)`` returns a ``CheckReport``: ``problems`` (errors: the job
must not start) and ``notes`` (counted warnings: unusual but usable). Every line names the
file, video or config key at fault. ``tools/data/check_dataset.py`` prints the report;
``tools/trainval.py`` and ``tools/test.py`` run the same checks before the first step.

What is checked:

* config keys: the known top-level keys (helper variables start with ``_``), every section
  with a ``type`` against its class's constructor, known plain sections (``train_cfg``,
  ``eval``, ``model.train_cfg`` / ``test_cfg``, ``model.membank``, ``pipeline_cfg``);
* the model against the dataset (``config_resolve``: classes, feature size, ``max_seq_len``);
* annotations (every malformed record), splits (listing the splits that exist), classes
  without examples, segments past the end of the video / features;
* feature datasets: every feature file present, its shape from the header (no data read;
  ``deep=True`` also reads every file for NaN / inf);
* video datasets: every video present (one file or frame folder per id) and readable, with
  one open per video (frame folders read their ``meta.json``, no frame is decoded);
* TALLFormer's memory bank (the working bank ``WORK_DIR/membank`` when it exists, else
  ``model.membank.template``): every training video present and complete, same frame count
  and frame rate as the dataset reads, same crop, feature size and backbone as the model.
"""
import difflib
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from tqdm import tqdm

from ..utils.config_keys import unknown_key_messages
from .config_resolve import DatasetCache, resolve_config, signature_default
from .config_paths import (TOP_LEVEL_KEYS, is_helper_name, registered_class, section_keys)

MAX_LISTED = 10  # names shown per problem kind; the rest are counted


@dataclass
class CheckReport:
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    summary: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def format(self):
        lines = []
        if self.problems:
            lines.append(f'{len(self.problems)} problem(s):')
            lines += [f'  ERROR {p}' for p in self.problems]
        if self.notes:
            lines.append(f'{len(self.notes)} warning(s):')
            lines += [f'  warning: {n}' for n in self.notes]
        lines += self.summary
        return '\n'.join(lines)


def _listed(items, limit=MAX_LISTED):
    items = list(items)
    shown = ', '.join(map(str, items[:limit]))
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


# ---------------------------------------------------------------------- config keys
def _registered_names():
    from ..registry import DATASETS, MODELS
    return sorted(set(DATASETS.module_dict) | set(MODELS.module_dict))


def key_problems(cfg):
    """Unknown top-level keys, unknown section keys and unregistered types."""
    root = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    problems = []
    top = [k for k in root if not is_helper_name(k)]
    problems += [line + ' (helper variables of a config file must start with "_")'
                 for line in unknown_key_messages('<top level>', top, TOP_LEVEL_KEYS)]
    problems = [p.replace("'<top level>.", "'") for p in problems]
    for key, value in root.items():
        if key in TOP_LEVEL_KEYS and isinstance(value, dict):
            problems += _section_problems((key, ), value, None)
    problems += _engine_section_problems(cfg)
    return problems


ENGINE_SECTIONS = ('train_cfg', 'optimizer', 'scheduler', 'train_dataloader',
                   'val_dataloader')


def _engine_section_problems(cfg):
    """The engine's own sections, checked by the engine (``config_schema``)."""
    from .config_schema import check_config_sections
    return check_config_sections(cfg)


def _section_problems(path, section, parent_type):
    dotted = '.'.join(path)
    if path[0] in ENGINE_SECTIONS:
        return []  # the engine's (see _engine_section_problems)
    problems = []
    type_name = section.get('type')
    if type_name is not None:
        cls = registered_class(type_name)
        if cls is None:
            close = difflib.get_close_matches(str(type_name), _registered_names(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ''
            return [f"{dotted}.type: '{type_name}' is not a registered model or dataset"
                    f'{hint}']
        parent_type = cls
    allowed = section_keys(path, section, parent_type)
    if allowed is not None:
        problems += unknown_key_messages(dotted, section, allowed)
    for key, value in section.items():
        if isinstance(value, dict):
            problems += _section_problems(path + (key, ), value, parent_type)
    return problems


# ---------------------------------------------------------------------- checks
class _Checker:
    def __init__(self, cfg, mode, work_dir, progress, deep, datasets):
        self.cfg, self.mode, self.work_dir = cfg, mode, work_dir
        self.progress, self.deep = progress, deep
        self.datasets = datasets or DatasetCache(cfg)
        self.report = CheckReport()
        self.videos_read = {}   # dataset key -> {video id: (num_frames, fps, path)}
        self.bank_fps = None
        self.workers = min(8, os.cpu_count() or 1)  # videos opened at a time
        self.all_videos = {}    # dataset key -> every well-formed video of its annotation file

    def problem(self, line):
        self.report.problems.append(line)

    def note(self, line):
        self.report.notes.append(line)

    def sections(self):
        if self.mode == 'train':
            keys = ['train_dataset']
        elif self.mode == 'test':
            keys = ['val_dataset']
        else:
            keys = ['train_dataset', 'val_dataset']
        return [k for k in keys if self._present(k)]

    def _present(self, key):
        if self.cfg.get(key):
            return True
        self.problem(f'{key}: missing from the config')
        return False

    def run(self):
        problems = key_problems(self.cfg)
        self.report.problems += problems
        if problems:  # the sections themselves are wrong: their data cannot be judged yet
            return self.report
        faulty = set()
        for key in self.sections():
            before = len(self.report.problems)
            self.dataset(key)
            if len(self.report.problems) > before:
                faulty.add(key)
        resolved = resolve_config(self.cfg, 'test' if self.mode == 'test' else 'train',
                                  self.datasets)
        # a dataset that cannot be built was reported above with the reasons
        self.report.problems += [line for line in resolved if not any(
            line.startswith(f'{key}: cannot build the dataset') for key in faulty)]
        self.label_maps_agree()
        self.eval_section()
        if self.mode in ('train', 'all'):
            self.membank()
        self.loader_workers()
        return self.report

    def loader_workers(self):
        """Loader workers of the job's data loaders must be able to start here."""
        from ..utils.workers import worker_tempdir_problem
        keys = {'train': ['train_dataloader'], 'test': ['val_dataloader']}.get(
            self.mode, ['train_dataloader', 'val_dataloader'])
        for key in keys:
            workers = (self.cfg.get(key) or {}).get('num_workers', 0)
            problem = worker_tempdir_problem(f'{key}.num_workers', workers)
            if problem:
                self.problem(problem)

    # ------------------------------------------------------------------ datasets
    def dataset(self, key):
        """The section's own checks, then (when they found nothing) the dataset built as the
        job builds it, so any remaining refusal is reported too."""
        from ..data.feature_datasets import FeatureDataset
        from ..data.video_dataset import VideoDataset
        section = self.cfg[key]
        cls = registered_class(section.get('type'))
        before = len(self.report.problems)
        if cls is not None and issubclass(cls, FeatureDataset):
            self.feature_dataset(key, section, cls)
        elif cls is not None and issubclass(cls, VideoDataset):
            self.video_dataset(key, section, cls)
        if len(self.report.problems) == before:
            _, error = self.datasets.get(key)
            if error:
                self.problem(error)

    def annotations(self, key, path_key, subsets):
        """Videos of the section's subsets (well-formed ones), problems and notes reported."""
        from ..data.annotations import check_annotation_file
        path = self.cfg[key].get(path_key)
        if not path or not os.path.isfile(str(path)):
            self.problem(f'{key}.{path_key}: annotation file not found: {path}')
            return None, {}
        videos, problems, notes = check_annotation_file(path)
        self.report.problems += problems
        self.report.notes += notes
        counts = Counter(v.subset.lower() for v in videos.values())
        wanted = [s.lower() for s in subsets]
        unknown = [s for s in wanted if s not in counts]
        if unknown:
            present = ', '.join(f'{n!r} ({c} videos)' for n, c in sorted(counts.items()))
            self.problem(f'{key}: no video of {path} has subset {unknown}; the splits there '
                         f'are {present or "none"}')
        chosen = {vid: v for vid, v in videos.items() if v.subset.lower() in wanted}
        self.all_videos[key] = videos
        return path, chosen

    def classes(self, key, videos, ann_path):
        """Classes known to the file but without an example in a training split."""
        if not videos or key != 'train_dataset':
            return
        segments = [s for v in videos.values() for s in v.segments if s.end > s.start]
        if not segments:
            self.problem(f'{key}: the training videos of {ann_path} have no action segment')
            return
        from ..data.annotations import AnnotationError, build_label_map
        dataset, _ = self.datasets.get(key)
        label_map = getattr(dataset, 'label_map', None)
        if label_map is None:  # the labels of the whole file, as the datasets number them
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    label_map = build_label_map(self.all_videos.get(key, {}).values())
            except AnnotationError:
                return  # reported with the annotation problems
        present = {s.label for s in segments}
        empty = sorted(set(label_map) - present)
        if empty:
            self.note(f'{key}: {len(empty)} class(es) of {ann_path} have no training example '
                      f'(the model cannot learn them): {_listed(empty)}')

    # ------------------------------------------------------------------ features
    def feature_dataset(self, key, section, cls):
        from ..data.feature_datasets import feature_file_paths
        split = section.get('split') or signature_default(cls, 'split') or ()
        split = [split] if isinstance(split, str) else list(split)
        ann_path, videos = self.annotations(key, 'json_file', split)
        if ann_path is None:
            return
        dataset, _ = self.datasets.get(key)
        folders = section.get('feat_folder')
        folders = [folders] if isinstance(folders, str) else list(folders or [])
        absent = [f for f in folders if not os.path.isdir(str(f))]
        if absent or not folders:
            self.problem(f'{key}.feat_folder: folder not found: {_listed(absent) or None}')
            return
        ext = section.get('file_ext') or signature_default(cls, 'file_ext') or '.npy'
        prefix = section.get('file_prefix')
        files = {vid: feature_file_paths(folders, prefix, vid, ext) for vid in videos}
        missing = [vid for vid, paths in files.items()
                   if not all(os.path.isfile(p) for p in paths)]
        if missing:
            skip = (section.get('missing') == 'skip' if 'missing' in _init_keys(cls)
                    else cls.skip_missing_features)
            line = (f'{key}: {len(missing)} of {len(files)} videos of split {split} have no '
                    f'feature file in {" + ".join(map(str, folders))} '
                    f'(<{prefix or ""}video_id>{ext}): {_listed(missing)}')
            if skip:
                self.note(line + '; they are skipped')
            else:
                self.problem(line)
        present = {vid: paths for vid, paths in files.items() if vid not in set(missing)}
        self.feature_shapes(key, section, cls, dataset, videos, present, ext)
        self.classes(key, videos, ann_path)

    def feature_shapes(self, key, section, cls, dataset, videos, files, ext):
        from ..data.feature_datasets import (FeatureFileError, _read_array, check_finite,
                                             folder_dims, read_feature_shape)
        npz_key = (section.get('npz_key') or 'feats') if ext == '.npz' else None
        input_dim = section.get('input_dim')
        if input_dim is None:
            input_dim = getattr(dataset, 'input_dim', None)
        num_folders = len(next(iter(files.values()), []))
        shapes, bad = {}, []
        bar = tqdm(files.items(), desc=f'check {key} features', unit='video',
                   disable=not self.progress, leave=False)
        for vid, paths in bar:
            try:
                found = [read_feature_shape(p, npz_key) for p in paths]
                if self.deep:
                    for p in paths:
                        check_finite(_read_array(p, vid, npz_key), vid, p)
            except FeatureFileError as err:
                bad.append(f'video {vid!r}: {err}')
                continue
            shapes[vid] = found
        if input_dim is None and shapes:  # measure: the width most files have
            widths = Counter(tuple(s[1] if len(s) == 2 else None for s in v)
                             for v in shapes.values())
            common = widths.most_common(1)[0][0]
            input_dim = list(common) if len(common) > 1 else common[0]
        dims = folder_dims(input_dim, num_folders) if input_dim is not None else None
        for vid, found in shapes.items():
            paths = files[vid]
            for path, shape, dim in zip(paths, found, dims or [-1] * len(found)):
                if len(shape) != 2 or shape[0] == 0 or (dim != -1 and shape[1] != dim):
                    bad.append(f'video {vid!r}: features in {path} have shape {shape}, '
                               f'expected (T > 0, {dim if dim != -1 else "C"})')
            lengths = {s[0] for s in found if len(s) == 2}
            if len(lengths) > 1:
                bad.append(f'video {vid!r}: feature files differ in length: '
                           + ', '.join(f'{p}: {s}' for p, s in zip(paths, found)))
        if bad:
            head = bad[:MAX_LISTED]
            self.report.problems += [f'{key}: {line}' for line in head]
            if len(bad) > len(head):
                self.problem(f'{key}: {len(bad) - len(head)} more feature file problem(s) '
                             'like the ones above')
        self.feature_coverage(key, section, cls, dataset, videos, shapes)
        self.report.summary.append(f'{key}: {len(videos)} videos, {len(shapes)} feature files '
                                   f'checked, feature size {input_dim}')

    def feature_coverage(self, key, section, cls, dataset, videos, shapes):
        """Annotation durations the features do not reach: actions there are cut away."""
        stride = getattr(dataset, 'feat_stride', None) or section.get('feat_stride') \
            or signature_default(cls, 'feat_stride')
        frames = getattr(dataset, 'num_frames', None) or section.get('num_frames') \
            or signature_default(cls, 'num_frames')
        if not stride or not frames or section.get('force_upsampling'):
            return  # resampled to the duration: the features always cover it
        shim = SimpleNamespace(default_fps=getattr(dataset, 'default_fps',
                                                   section.get('default_fps')))
        short = []
        for vid, found in shapes.items():
            video = videos[vid]
            fps = cls.video_fps(shim, video)
            if not fps or len(found[0]) != 2 or found[0][0] == 0:
                continue
            covered = ((found[0][0] - 1) * stride + frames) / fps
            tolerance = (stride + frames) / fps
            late = [s for s in video.segments if s.end > covered + tolerance]
            if video.duration - covered > tolerance and late:
                short.append((video.duration - covered, vid, covered, len(late)))
        if short:
            short.sort(reverse=True)
            worst = '; '.join(f'{vid!r} {gap:.1f} s short (features cover {cov:.1f} s), '
                              f'{n} action(s) past their end'
                              for gap, vid, cov, n in short[:3])
            self.note(f'{key}: in {len(short)} video(s) the annotation duration exceeds what '
                      f'the features cover and {sum(s[3] for s in short)} action(s) lie past '
                      f'the features (cut or dropped in training): {worst}')

    # ------------------------------------------------------------------ videos
    def video_dataset(self, key, section, cls):
        subset = section.get('subset')
        if subset is None:
            self.problem(f'{key}.subset: not set; name the split to use')
            return
        ann_path, videos = self.annotations(key, 'ann_file', [subset])
        if ann_path is None:
            return
        if section.get('mode', 'train') == 'train' and section.get('skip_empty', True):
            videos = {vid: v for vid, v in videos.items() if v.segments}
        prefix = section.get('data_prefix')
        if not prefix or not os.path.isdir(str(prefix)):
            self.problem(f'{key}.data_prefix: video folder not found: {prefix}')
            return
        paths, missing, ambiguous = _find_videos(str(prefix), list(videos))
        if missing:
            line = (f'{key}: {len(missing)} of {len(videos)} videos of subset {subset!r} are not '
                    f'in {prefix} (<video_id>/ frame folder or <video_id>.<ext> file): '
                    f'{_listed(missing)}')
            if section.get('missing') == 'skip':
                self.note(line + '; they are skipped')
            else:
                self.problem(line)
        for vid, names in ambiguous.items():
            self.problem(f'{key}: video {vid!r} matches several entries of {prefix}: '
                         f'{_listed(names)}; keep one')
        self.read_videos(key, section, videos, paths)
        self.classes(key, videos, ann_path)

    def read_videos(self, key, section, videos, paths):
        """One open per video (several at a time): frame count and rate as the dataset reads
        them."""
        from concurrent.futures import ThreadPoolExecutor

        from ..data.video_readers import VideoReadError, open_video

        def measure(item):
            vid, path = item
            try:
                reader = open_video(path, section.get('backend', 'auto'), fps=section.get('fps'),
                                    sample_fps=section.get('sample_fps'))
            except (VideoReadError, OSError, ValueError) as err:
                return vid, path, None, str(err), None
            error, remark = _frame_folder_problem(path, reader.num_frames)
            return vid, path, (reader.num_frames, float(reader.fps)), error, remark

        read, bad, short, unmarked = {}, [], [], []
        with ThreadPoolExecutor(self.workers) as pool:
            results = tqdm(pool.map(measure, paths.items()), total=len(paths), leave=False,
                           desc=f'check {key} videos', unit='video', disable=not self.progress)
            for vid, path, measured, error, remark in results:
                if error:
                    bad.append(f'video {vid!r}: {error}')
                    continue
                if remark:
                    unmarked.append(vid)
                num_frames, fps = measured
                read[vid] = (num_frames, fps, path)
                video = videos[vid]
                length = num_frames / fps
                late = [s for s in video.segments if s.end > length + 1.0 / fps]
                if video.duration - length > 1.0 / fps + 0.05 and late:
                    short.append((video.duration - length, vid, length, len(late)))
        self.report.problems += [f'{key}: {line}' for line in bad]
        if unmarked:
            self.note(f'{key}: {len(unmarked)} frame folder(s) have no meta.json (not made by '
                      'tools/data/extract_frames.py, or an interrupted run: then run it again, '
                      f'it redoes them): {_listed(unmarked)}')
        if short:
            short.sort(reverse=True)
            worst = '; '.join(f'{vid!r} {gap:.2f} s short (the video has {length:.2f} s), '
                              f'{n} action(s) past its end' for gap, vid, length, n in short[:3])
            self.note(f'{key}: in {len(short)} video(s) the annotation duration exceeds the '
                      f'video and {sum(s[3] for s in short)} action(s) lie past its end (cut '
                      f'in training): {worst}')
        self.videos_read[key] = read
        self.report.summary.append(f'{key}: {len(videos)} videos, {len(read)} read '
                                   f'({sum(n for n, _, _ in read.values())} frames)')

    # ------------------------------------------------------------------ consistency
    def label_maps_agree(self):
        keys = [k for k in ('train_dataset', 'val_dataset') if self.cfg.get(k)]
        if len(keys) < 2 or self.mode != 'all':
            return
        maps = {}
        for key in keys:
            dataset, _ = self.datasets.get(key)
            if dataset is not None and getattr(dataset, 'label_map', None) is not None:
                maps[key] = dict(dataset.label_map)
        if len(maps) == 2 and maps['train_dataset'] != maps['val_dataset']:
            a, b = maps['train_dataset'], maps['val_dataset']
            differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            self.problem(f'train_dataset and val_dataset number the classes differently '
                         f'(label: train id / val id): '
                         + _listed(f'{k}: {a.get(k)} / {b.get(k)}' for k in differ))

    def eval_section(self):
        ev = self.cfg.get('eval') or {}
        if self.mode == 'train' or not ev.get('gt_json'):
            return
        from ..data.annotations import check_annotation_file
        if not os.path.isfile(str(ev['gt_json'])):
            self.problem(f'eval.gt_json: annotation file not found: {ev["gt_json"]}')
            return
        videos, problems, _ = check_annotation_file(ev['gt_json'])
        if ev.get('gt_json') not in (self.cfg.get('val_dataset') or {}).values():
            self.report.problems += problems
        subset = ev.get('subset')
        subsets = {v.subset.lower() for v in videos.values()}
        if subset is not None and str(subset).lower() not in subsets:
            self.problem(f'eval.subset={subset!r}: no video of {ev["gt_json"]} has it (the '
                         f'splits there are {sorted(subsets)})')

    # ------------------------------------------------------------------ memory bank
    def membank(self):
        from ..models.detectors.tallformer import TALLFormer
        model = self.cfg.get('model') or {}
        cls = registered_class(model.get('type'))
        if cls is None or not issubclass(cls, TALLFormer):
            return
        path, which = self.bank_path(model.get('membank') or {})
        if path is None:
            return
        from ..membank import MemoryBank
        from ..membank.bank import BankError
        try:
            bank = MemoryBank.open(path, 'r')
        except BankError as err:
            self.problem(f'{which}: {err}')
            return
        self.bank_settings(bank, which, model)
        self.bank_videos(bank, which)

    def bank_path(self, membank):
        """(path, the key it comes from): the working bank when it exists, else the template."""
        working = membank.get('path') or (os.path.join(self.work_dir, 'membank')
                                          if self.work_dir else None)
        if working and (Path(working) / 'zarr.json').is_file():
            return working, f'working memory bank {working}'
        template = membank.get('template')
        if not template:
            self.problem('model.membank.template: not set; fill a bank with '
                         'tools/data/extract_features.py and name it here')
            return None, None
        if not (Path(template) / 'zarr.json').is_file():
            self.problem(f'model.membank.template: no memory bank at {template}; fill it with '
                         'tools/data/extract_features.py --config <extraction config>')
            return None, None
        return template, f'model.membank.template {template}'

    def bank_settings(self, bank, which, model):
        from .extract import backbone_name
        settings = bank.attrs.get('settings') or {}
        old = (bank.attrs.get('config') or {}).get('data') or {}
        backbone_cfg = dict(model.get('backbone') or {})
        expected = backbone_name(backbone_cfg) if backbone_cfg.get('type') else None
        if expected is not None and bank.backbone != expected:
            self.problem(f'{which}: made by backbone {bank.backbone}, but model.backbone is '
                         f'{expected}: extract a bank with the model\'s backbone and weights')
        weights = settings.get('weights')
        pretrained = backbone_cfg.get('pretrained')
        if 'weights' in settings and (weights or None) != (
                os.path.basename(pretrained) if pretrained else None):
            self.problem(f'{which}: features from weights {weights}, model.backbone.pretrained '
                         f'is {pretrained}')
        feat_dim = _backbone_out_channels(backbone_cfg)
        if feat_dim is not None and feat_dim != bank.feat_dim:
            self.problem(f'{which}: feature size {bank.feat_dim}, but model.backbone gives '
                         f'{feat_dim}')
        for name, bank_value in (('frames_per_row', bank.frames_per_row),
                                 ('chunk_size', bank.frames_per_chunk)):
            value = model.get(name, signature_default(registered_class(model['type']), name))
            if value != bank_value:
                self.problem(f'{which}: {bank_value} {name.replace("_", " ")}, but '
                             f'model.{name}={value}')
        self.bank_fps = settings.get('fps', old.get('fps'))
        crop = settings.get('crop_size', old.get('crop_size'))
        train = self.cfg.get('train_dataset') or {}
        train_crop = (train.get('pipeline_cfg') or {}).get('crop_size')
        if train_crop is None:
            from ..data.video_dataset import default_video_pipeline
            train_crop = signature_default_fn(default_video_pipeline, 'crop_size')
        if crop is not None and train.get('pipeline') is None and _plain(crop) != \
                _plain(train_crop):
            self.problem(f'{which}: features of {crop}-pixel crops, but '
                         f'train_dataset.pipeline_cfg.crop_size={train_crop}')

    def bank_videos(self, bank, which):
        read = self.videos_read.get('train_dataset')
        if read is None:
            return
        absent, incomplete, frames, rates = [], [], [], []
        bar = tqdm(read.items(), desc='check memory bank', unit='video',
                   disable=not self.progress, leave=False)
        for vid, (num_frames, fps, _) in bar:
            if not bank.has_video(vid):
                absent.append(vid)
                continue
            if not bank.is_complete(vid):
                incomplete.append(vid)
            if bank.num_frames(vid) != num_frames:
                frames.append(f'{vid} (bank {bank.num_frames(vid)}, dataset {num_frames})')
            if self.bank_fps and abs(float(self.bank_fps) - fps) > 1e-3:
                rates.append(f'{vid} ({fps:.3f} fps)')
        fix = 'run tools/data/extract_features.py with the extraction config of this bank'
        if absent:
            self.problem(f'{which}: {len(absent)} training video(s) are not in the bank '
                         f'({fix}): {_listed(absent)}')
        if incomplete:
            self.problem(f'{which}: {len(incomplete)} training video(s) are incomplete in the '
                         f'bank (an interrupted extraction: {fix} again, it resumes): '
                         f'{_listed(incomplete)}')
        if rates:
            self.problem(f'{which}: extracted at {self.bank_fps} fps, but the dataset reads '
                         f'{len(rates)} video(s) at another rate (set train_dataset.sample_fps'
                         f'={self.bank_fps} or extract frames at that rate): {_listed(rates)}')
        if frames:
            self.problem(f'{which}: {len(frames)} video(s) have another frame count in the '
                         f'bank than the dataset reads: {_listed(frames)}')
        self.report.summary.append(f'{which}: {len(read) - len(absent)} of {len(read)} training '
                                   f'videos present, feature size {bank.feat_dim}')


def _frame_folder_problem(path, num_frames):
    """(error, remark) about a frame folder: ``meta.json`` is written last by extract_frames,
    so a folder without it is unfinished or hand-made (a remark); fewer images than it
    promises is an error. One directory listing, no image is opened."""
    from ..data.ffmpeg import META_FILE
    from ..data.video_readers import IMAGE_SUFFIXES
    if not os.path.isdir(path):
        return None, None
    if not os.path.isfile(os.path.join(path, META_FILE)):
        return None, f'no {META_FILE}'
    images = sum(1 for e in os.scandir(path) if e.name.lower().endswith(IMAGE_SUFFIXES))
    if images < num_frames:
        return (f'frame folder {path} holds {images} images but its {META_FILE} promises '
                f'{num_frames}: extract its frames again'), None
    return None, None


def _init_keys(cls):
    from .config_paths import constructor_keys
    return constructor_keys(cls) or set()


def signature_default_fn(fn, name):
    import inspect
    param = inspect.signature(fn).parameters.get(name)
    return None if param is None else param.default


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _backbone_out_channels(backbone_cfg):
    """Feature size of the configured backbone, built on the meta device (no weights)."""
    if not backbone_cfg.get('type'):
        return None
    import torch
    from ..registry import MODELS
    try:
        with torch.device('meta'), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model = MODELS.build(dict(backbone_cfg, pretrained=None))
        return int(model.out_channels)
    except Exception:  # an unbuildable backbone is reported when the model is built
        return None


def _find_videos(prefix, video_ids):
    """(id -> path, missing ids, id -> several entries) for ``<prefix>/<id>[.<ext>]``."""
    from ..data.video_dataset import VIDEO_EXTS, find_videos
    entries = {}
    for entry in os.scandir(prefix):
        stem, ext = os.path.splitext(entry.name)
        if entry.is_dir():
            entries.setdefault(entry.name, []).append(entry.name + '/')
        elif ext.lower() in VIDEO_EXTS:
            entries.setdefault(stem, []).append(entry.name)
    wanted = set(video_ids)
    ambiguous = {vid: names for vid, names in entries.items() if vid in wanted and len(names) > 1}
    found, missing = find_videos(prefix, video_ids)
    return found, missing, ambiguous


def check_config(cfg, mode='train', work_dir=None, progress=True, deep=False, datasets=None):
    """Every problem of a config and its data (see the module docstring); fills the model keys
    that follow from the dataset (``config_resolve``) in place.

    mode: 'train' (training data + memory bank), 'test' (validation data, evaluation file) or
        'all'. work_dir: where the working memory bank would be. deep: also read every
        feature file completely (NaN / inf).
    """
    if mode not in ('train', 'test', 'all'):
        raise ValueError(f"mode must be 'train', 'test' or 'all', got {mode!r}")
    return _Checker(cfg, mode, work_dir, progress, deep, datasets).run()


def is_main_process():
    """Rank 0 of a torchrun job (or a single process): the one that runs the data checks."""
    return int(os.environ.get('RANK', '0')) == 0


def preflight(cfg, mode, work_dir=None, progress=True):
    """What ``tools/trainval.py`` / ``tools/test.py`` run before any work: the config
    resolution on every rank, the data checks on rank 0. Returns the report."""
    if not is_main_process():
        report = CheckReport(problems=key_problems(cfg))
        if report.ok:
            report.problems += resolve_config(cfg, 'test' if mode == 'test' else 'train')
        return report
    return check_config(cfg, mode, work_dir, progress=progress)


def preflight_or_exit(cfg, mode, work_dir=None, progress=True):
    """``preflight`` for the command-line tools: warnings go to stderr, problems end the
    process with status 1 after listing every one of them."""
    import sys
    report = preflight(cfg, mode, work_dir, progress)
    if not report.ok:
        raise SystemExit(report.format())
    if report.notes and is_main_process():
        print(report.format(), file=sys.stderr)
    return report


__all__ = ['CheckReport', 'check_config', 'key_problems', 'preflight', 'preflight_or_exit']
