"""Which keys a config may hold: the known top-level keys of train / test configs, and the
keys a section accepts (a registered class's constructor arguments, the engine's sections as
``config_schema`` defines them, or a known sub-section's defaults). Used by the config loader
(``--cfg-options`` paths) and the config checks.

Helper variables of a config file (values used to build its sections, such as a data root)
must start with ``_`` (``_data_root = 'data/mine'``); any other top-level name that is not
listed here is an unknown key.
"""
import inspect

TOP_LEVEL_KEYS = {
    'model': 'the detector',
    'load_from': 'initial weights for a fresh run (fine-tuning)',
    'load_from_strict': 'every key of load_from must fit (default True)',
    'load_from_ema': "load_from's EMA weights when it has them (default True)",
    'load_from_prefix': "key prefix mapping for load_from (None: automatic)",
    'train_dataset': 'training data', 'val_dataset': 'validation / test data',
    'train_dataloader': 'batch size, workers, collate function (training)',
    'val_dataloader': 'batch size, workers, collate function (testing)',
    'optimizer': 'optimiser', 'scheduler': 'learning-rate schedule',
    'train_cfg': 'training loop settings', 'eval': 'evaluation (gt_json, subset, thresholds)',
    'work_dir': 'output folder', 'device': "None (CUDA when available) or 'cpu'",
    'cpu_threads': 'torch CPU threads', 'custom_imports': 'modules to import first',
    'feature_extractor': 'extraction config that computed the training features (inference '
                         'on videos with a feature-based model)',
}


def register_top_level_keys(**described):
    """Let another part of the project declare its own top-level config keys."""
    TOP_LEVEL_KEYS.update(described)


def is_helper_name(key):
    return str(key).startswith('_')


def registered_class(type_name):
    """The class registered as ``type_name`` in MODELS or DATASETS (None if neither)."""
    from ..registry import DATASETS, MODELS
    if not isinstance(type_name, str):
        return type_name if inspect.isclass(type_name) else None
    for registry in (DATASETS, MODELS):
        cls = registry.get(type_name)
        if cls is not None:
            return cls
    return None


def constructor_keys(cls):
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` to the parent classes;
    None when the chain ends outside this project with ``**kwargs`` (anything may be valid)."""
    keys = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        keys |= {p.name for p in params if p.name != 'self'
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return keys
        if not klass.__module__.startswith('vedatad'):
            return None
    return keys


def _engine_section_keys(name):
    """Keys of the engine's own sections (``config_schema``: one source of truth)."""
    from . import config_schema as schema
    defaults = {'train_cfg': schema.TRAIN_CFG_DEFAULTS, 'optimizer': schema.OPTIMIZER_DEFAULTS,
                'scheduler': schema.SCHEDULER_DEFAULTS, 'eval': schema.EVAL_DEFAULTS,
                'train_dataloader': schema.DATALOADER_DEFAULTS,
                'val_dataloader': schema.DATALOADER_DEFAULTS}.get(name)
    return None if defaults is None else set(defaults)


def _detector_defaults(name):
    from ..models.detectors import actionformer
    return set({'train_cfg': actionformer.DEFAULT_TRAIN_CFG,
                'test_cfg': actionformer.DEFAULT_TEST_CFG}[name])


def _pipeline_cfg_keys():
    from ..data.video_dataset import default_video_pipeline
    return constructor_keys_of_function(default_video_pipeline) - {'mode', 'window_size',
                                                                    'chunk_size'}


def constructor_keys_of_function(fn):
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


MEMBANK_KEYS = ('template', 'path', 'frozen')


def section_keys(path, section, parent_type=None):
    """Keys allowed in the config dict at ``path`` (a tuple of keys); None when unknown.

    ``parent_type`` is the class of the nearest enclosing section that has a ``type``.
    """
    if not path:
        return set(TOP_LEVEL_KEYS)
    name = path[-1]
    if len(path) == 1 and _engine_section_keys(name) is not None:
        return _engine_section_keys(name)  # before 'type': optimizer.type is not a class
    type_name = section.get('type') if isinstance(section, dict) else None
    if type_name is not None:
        cls = registered_class(type_name)
        keys = constructor_keys(cls) if cls is not None else None
        return None if keys is None else keys | {'type'}
    if parent_type is not None:
        from ..data.video_dataset import VideoDataset
        from ..models.detectors.actionformer import ActionFormer
        from ..models.detectors.tallformer import TALLFormer
        if name in ('train_cfg', 'test_cfg') and issubclass(parent_type, ActionFormer):
            return _detector_defaults(name)
        if name == 'membank' and issubclass(parent_type, TALLFormer):
            return set(MEMBANK_KEYS)
        if name == 'pipeline_cfg' and issubclass(parent_type, VideoDataset):
            return _pipeline_cfg_keys()
    return None
