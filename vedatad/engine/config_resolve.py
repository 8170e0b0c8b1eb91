"""Model facts written once: the model takes them from the dataset.

ActionFormer: ``model.num_classes``, ``model.input_dim`` and ``model.max_seq_len`` come from
the dataset section (``train_dataset`` when training, ``val_dataset`` when testing): its
explicit keys, or what the dataset measures (a generic dataset counts the labels of its JSON
and reads the feature size from a file header).

TALLFormer: ``model.detector.num_classes`` comes from the dataset's labels;
``model.detector.max_seq_len`` is the smallest valid length that holds a window
(``window_size / (frames_per_row x TCM stride)`` steps) and ``model.tcm.max_len`` that many
steps.

A key set on both sides with different values is a contradiction: a problem naming both keys
and values. ``max_seq_len`` must suit the model's pyramid; the problem states the nearest
valid values. ``tools/trainval.py``, ``tools/test.py`` and ``tools/data/check_dataset.py``
call ``resolve_config`` before building anything.
"""
import inspect
import math

from .config_paths import registered_class

FEATURE_FACTS = ('num_classes', 'input_dim', 'max_seq_len')


class DatasetCache:
    """Datasets built at most once per section while resolving and checking a config."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._built = {}

    def get(self, key):
        """(dataset, None) or (None, error message)."""
        if key not in self._built:
            from ..registry import DATASETS
            try:
                self._built[key] = (DATASETS.build(self.cfg[key]), None)
            except Exception as err:  # reported as a problem naming the section
                self._built[key] = (None, f'{key}: cannot build the dataset: '
                                          f'{type(err).__name__}: {err}')
        return self._built[key]


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def signature_default(cls, name):
    """Constructor default of ``name`` for ``cls`` (following ``**kwargs`` to parents)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if name in params and params[name].default is not inspect.Parameter.empty:
            return params[name].default
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return None
    return None


def _setting(section, cls, name):
    """A section's value for ``name``: explicit, else its class's constructor default."""
    if section.get(name) is not None:
        return section[name]
    return signature_default(cls, name) if cls is not None else None


def seq_len_multiple(detector_cfg):
    """Lengths valid for an ActionFormer config are the multiples of this number."""
    from ..models.detectors.actionformer import ActionFormer, _seq_len_multiple
    arch = list(_setting(detector_cfg, ActionFormer, 'backbone_arch'))
    scale = _setting(detector_cfg, ActionFormer, 'scale_factor')
    start = _setting(detector_cfg, ActionFormer, 'fpn_start_level')
    wins = _setting(detector_cfg, ActionFormer, 'n_mha_win_size')
    levels = arch[-1] + 1
    wins = [wins] * levels if isinstance(wins, int) else list(wins)
    strides = [scale ** i for i in range(start, levels)]
    return _seq_len_multiple(strides, wins)[1]


def nearest_valid(value, multiple):
    below = value // multiple * multiple
    return ([below] if below else []) + [below + multiple]


def _max_seq_len_problem(key, value, multiple, model_key):
    valid = ' or '.join(map(str, nearest_valid(value, multiple)))
    return (f'{key}={value} does not suit the model ({model_key} must be a multiple of '
            f'{multiple}: pyramid strides x local windows); nearest valid values: {valid}')


class _Resolver:
    def __init__(self, cfg, mode, datasets, use_data):
        self.cfg, self.mode, self.use_data = cfg, mode, use_data
        self.datasets = datasets or DatasetCache(cfg)
        self.problems, self.filled = [], {}
        self.unbuilt = set()  # dataset sections that could not be built (already reported)

    def dataset_key(self):
        order = ('train_dataset', 'val_dataset') if self.mode == 'train' else ('val_dataset', )
        return next((k for k in order if self.cfg.get(k)), None)

    def built(self, key, why):
        if not self.use_data or key in self.unbuilt:
            return None
        dataset, error = self.datasets.get(key)
        if error:
            self.unbuilt.add(key)
            self.problems.append(f'{error} (needed to take {why} from it)')
        return dataset

    def set_model(self, section, path, name, value, source):
        """Fill ``section[name]`` or report a contradiction; ``source`` says where ``value``
        comes from (``train_dataset.num_classes=20`` or a measurement)."""
        key = '.'.join(path + (name, ))
        given = section.get(name)
        if given is None:
            section[name] = value
            self.filled[key] = (value, source)
        elif _plain(given) != _plain(value):
            self.problems.append(
                f'{key}={given!r} contradicts {source}: remove {key} (the model takes it '
                'from the dataset) or make the two agree')

    # ------------------------------------------------------------------ ActionFormer
    def dataset_fact(self, ds_key, name):
        """(value, the key that states it) from a feature dataset section."""
        section = self.cfg[ds_key]
        if section.get(name) is not None:
            return section[name], f'{ds_key}.{name}'
        dataset = self.built(ds_key, f'model.{name}')
        if dataset is None or getattr(dataset, name, None) is None:
            return None, None
        return getattr(dataset, name), f'{ds_key}.{name} (measured from the data)'

    def fact_key(self, ds_key, name):
        """Testing builds the model that training built: a training crop length stated in
        train_dataset wins over the validation section's."""
        train = self.cfg.get('train_dataset') or {}
        if name == 'max_seq_len' and train.get(name) is not None:
            return 'train_dataset'
        return ds_key

    def cross_check_datasets(self, names):
        train, val = self.cfg.get('train_dataset'), self.cfg.get('val_dataset')
        if not (train and val):
            return
        if not (train.get('force_upsampling') or val.get('force_upsampling')):
            # only resampled features (ActivityNet) use max_seq_len outside training
            names = [n for n in names if n != 'max_seq_len']
        for name in names:
            a, b = train.get(name), val.get(name)
            if a is not None and b is not None and _plain(a) != _plain(b):
                self.problems.append(f'train_dataset.{name}={a!r} contradicts '
                                     f'val_dataset.{name}={b!r}: one model serves both')

    def actionformer(self, model, path=('model', )):
        ds_key = self.dataset_key()
        if ds_key is None:
            return
        self.cross_check_datasets(FEATURE_FACTS)
        for name in FEATURE_FACTS:
            value, source = self.dataset_fact(self.fact_key(ds_key, name), name)
            if value is None:
                if model.get(name) is None and self.use_data and ds_key not in self.unbuilt:
                    self.problems.append(f"{'.'.join(path + (name, ))} is not set and "
                                         f'{ds_key} does not state it: set {ds_key}.{name}')
                continue
            self.set_model(model, path, name, value, f'{source}={value!r}')
        length = model.get('max_seq_len')
        if length is not None:
            multiple = seq_len_multiple(model)
            if length % multiple:
                _, source = self.dataset_fact(self.fact_key(ds_key, 'max_seq_len'),
                                              'max_seq_len')
                self.problems.append(_max_seq_len_problem(
                    source or '.'.join(path + ('max_seq_len', )), length, multiple,
                    '.'.join(path + ('max_seq_len', ))))

    # ------------------------------------------------------------------ TALLFormer
    def tallformer(self, model, cls):
        from ..models.tcm import TemporalConsistencyModule
        ds_key = self.dataset_key()
        detector = model.setdefault('detector', {})
        tcm = model.setdefault('tcm', {})
        if ds_key is not None:
            self.video_num_classes(ds_key, detector)
        windows = [(k, self.cfg[k].get('window_size')) for k in ('train_dataset', 'val_dataset')
                   if self.cfg.get(k) and self.cfg[k].get('window_size')]
        if not windows:
            return
        chunk = _setting(model, cls, 'chunk_size')
        for key, window in windows:
            if window % chunk:
                self.problems.append(f'{key}.window_size={window} is not a multiple of '
                                     f'model.chunk_size={chunk} (the memory bank\'s chunk)')
        window_key, window = max(windows, key=lambda kv: kv[1])
        reductions = _setting(tcm, TemporalConsistencyModule, 'num_reductions')
        feat_stride = _setting(model, cls, 'frames_per_row') * 2 ** reductions
        steps = math.ceil(window / feat_stride)
        if tcm.get('max_len') is None:
            tcm['max_len'] = steps
            self.filled['model.tcm.max_len'] = (steps, f'{window_key}.window_size')
        multiple = seq_len_multiple(detector)
        needed = math.ceil(steps / multiple) * multiple
        given = detector.get('max_seq_len')
        where = (f'{window_key}.window_size={window} frames give {steps} detector steps '
                 f'({feat_stride} frames per step)')
        if given is None:
            detector['max_seq_len'] = needed
            self.filled['model.detector.max_seq_len'] = (needed, f'{window_key}.window_size')
        elif given % multiple:
            self.problems.append(_max_seq_len_problem('model.detector.max_seq_len', given,
                                                      multiple, 'model.detector.max_seq_len')
                                 + f'; {where}: {needed} holds them')
        elif given < steps:
            self.problems.append(f'model.detector.max_seq_len={given} is shorter than a window: '
                                 f'{where}; use {needed} (or remove the key: it is derived)')

    def video_num_classes(self, ds_key, detector):
        section = self.cfg[ds_key]
        if section.get('class_names'):
            value = len(section['class_names'])
            source = f'the {value} entries of {ds_key}.class_names'
        else:
            dataset = self.built(ds_key, 'model.detector.num_classes')
            label_map = getattr(dataset, 'label_map', None) if dataset is not None else None
            if label_map is None:
                if detector.get('num_classes') is None and self.use_data:
                    self.problems.append(f'model.detector.num_classes is not set and cannot be '
                                         f'taken from {ds_key}')
                return
            value = len(label_map)
            source = f'the {value} labels of {ds_key}.ann_file ({section.get("ann_file")})'
        self.set_model(detector, ('model', 'detector'), 'num_classes', value, source)

    def run(self):
        model = self.cfg.get('model')
        if not model:
            return
        from ..models.detectors.actionformer import ActionFormer
        from ..models.detectors.tallformer import TALLFormer
        cls = registered_class(model.get('type'))
        if cls is None:
            return  # an unknown model type is reported by the config checks
        if issubclass(cls, TALLFormer):
            self.tallformer(model, cls)
        elif issubclass(cls, ActionFormer):
            self.actionformer(model)


def resolve_config(cfg, mode='train', datasets=None, use_data=True):
    """Fill the model keys that follow from the dataset (in place); returns the problems.

    mode: 'train' takes the facts from ``train_dataset``, 'test' from ``val_dataset``.
    datasets: a ``DatasetCache`` shared with the config checks (built datasets are reused).
    use_data: False derives only what the config itself states (no file is read).
    Returns a list of messages, empty when the config is consistent.
    """
    resolver = _Resolver(cfg, mode, datasets, use_data)
    resolver.run()
    return resolver.problems


def resolve_or_raise(cfg, mode='train', **kwargs):
    """``resolve_config`` raising ``ConfigKeyError`` with every problem."""
    from ..utils.config_keys import ConfigKeyError
    problems = resolve_config(cfg, mode, **kwargs)
    if problems:
        raise ConfigKeyError('\n'.join(problems))
    return cfg
