"""One config loader for every tool: ``load_config(path, options)`` and ``--cfg-options``.

``--cfg-options KEY=VALUE ...`` follows mmengine's value syntax (``5`` int, ``1e-4`` float,
``True`` / ``False`` / ``None``, ``[a,b]`` list, ``(a,b)`` tuple, ``a,b`` list, nesting
allowed) with two differences: spaces are kept (``work_dir=/data/my runs/x`` is that path;
mmengine's parser deletes every space), and a value in quotes is a string as written
(``'a,b'`` is not a list). Each KEY must name something the config can hold: an existing key,
or an argument of the section's registered class (``train_dataset.fpz=15`` is an error that
suggests ``train_dataset.fps``).
"""
import argparse
import difflib
import os

from ..utils.config_keys import ConfigKeyError
from .config_paths import is_helper_name, registered_class, section_keys

QUOTES = ('"', "'")


class CfgOptionError(ValueError):
    """A ``--cfg-options`` entry that is not ``KEY=VALUE`` or has unbalanced brackets."""


def _split_top_level(text):
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in QUOTES:
            quote = char
        elif char in '([':
            depth += 1
        elif char in ')]':
            depth -= 1
            if depth < 0:
                raise CfgOptionError(f'unbalanced brackets in {text!r}')
        elif char == ',' and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quote:
        raise CfgOptionError(f'unbalanced brackets or quotes in {text!r}')
    parts.append(text[start:])
    return parts


def _scalar(text):
    word = text.strip()
    for kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            pass
    if word.lower() in ('true', 'false'):
        return word.lower() == 'true'
    if word == 'None':
        return None
    return text  # a string, spaces kept


def parse_value(text):
    """A ``--cfg-options`` value: numbers, booleans, None, lists, tuples; strings keep their
    spaces; quoted text is a string as written."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] in QUOTES and stripped[-1] == stripped[0]:
        return stripped[1:-1]
    for open_, close, kind in (('[', ']', list), ('(', ')', tuple)):
        if stripped.startswith(open_) and stripped.endswith(close):
            inner = stripped[1:-1]
            if not inner.strip():
                return kind()
            return kind(parse_value(p.strip()) for p in _split_top_level(inner))
    parts = _split_top_level(text)
    if len(parts) > 1:
        return [parse_value(p.strip()) for p in parts]
    return _scalar(text)


def parse_options(pairs):
    """['a.b=1', 'c=x y'] -> {'a.b': 1, 'c': 'x y'}."""
    options = {}
    for pair in pairs:
        if '=' not in pair:
            raise CfgOptionError(f'--cfg-options: expected KEY=VALUE, got {pair!r}')
        key, value = pair.split('=', 1)
        if not key.strip():
            raise CfgOptionError(f'--cfg-options: empty key in {pair!r}')
        options[key.strip()] = parse_value(value)
    return options


class CfgOptionsAction(argparse.Action):
    """argparse action: ``--cfg-options k=v [k=v ...]`` -> dict (see ``parse_value``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        try:
            options.update(parse_options(values))
        except CfgOptionError as err:
            parser.error(str(err))
        setattr(namespace, self.dest, options)


def add_cfg_options(parser, example='train_cfg.epochs=5'):
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        metavar='KEY=VALUE',
                        help=f'override config entries, e.g. {example} (spaces in values are '
                             "kept; quote a value to keep it a string: 'a,b')")


def _suggest(key, allowed, prefix):
    close = difflib.get_close_matches(key, sorted(map(str, allowed)), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ''


def option_key_problems(cfg, options, top_level_keys=None):
    """One message per ``--cfg-options`` key that names nothing the config can hold.

    ``top_level_keys``: keys a new top-level entry may use (None: only the config's own).
    """
    problems = []
    root = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    for dotted in options:
        parts = dotted.split('.')
        node, parent_type, path = root, None, ()
        for depth, part in enumerate(parts):
            prefix = '.'.join(parts[:depth]) + ('.' if depth else '')
            last = depth == len(parts) - 1
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(f"--cfg-options {dotted}: '{prefix}{part}' is not an index "
                                    f'of the {len(node)}-element list {prefix.rstrip(".")}')
                    break
                node = node[int(part)]
                if not isinstance(node, dict):  # mmengine merges into list items that are dicts
                    problems.append(f'--cfg-options {dotted}: set the whole list instead '
                                    f"({prefix.rstrip('.')}=[...])")
                    break
                path += (part, )
                continue
            if not isinstance(node, dict):
                problems.append(f"--cfg-options {dotted}: '{prefix.rstrip('.')}' is not a "
                                'section (it holds a value), so it has no key '
                                f"'{part}'")
                break
            if part in node:
                if node.get('type') is not None:
                    parent_type = registered_class(node.get('type')) or parent_type
                path += (part, )
                node = node[part]
                continue
            if not path and is_helper_name(part):
                break  # a helper variable
            allowed = section_keys(path, node, parent_type) if path else (
                set(top_level_keys) if top_level_keys is not None else None)
            if allowed is None and path:
                break  # a section whose keys are not known here: accepted
            allowed = set(allowed or ()) | set(node)
            if last and part in allowed:
                break
            problems.append(f"--cfg-options {dotted}: unknown config key '{prefix}{part}'"
                            + _suggest(part, allowed, prefix))
            break
    return problems


def load_config(path, options=None, top_level_keys=None):
    """Read a config file (mmengine, ``_base_`` inheritance) and apply ``--cfg-options``.

    An option key that names nothing the config can hold is a ``ConfigKeyError`` listing
    every such key with a close match. ``custom_imports`` are imported before the keys are
    checked (their classes may be the sections' types).
    """
    from mmengine.config import Config
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError as err:  # a _base_ file it inherits from
        missing = err.filename or err
        raise FileNotFoundError(
            f'{path}: a file it inherits from (_base_) is not found: {missing}; a config '
            'copied out of configs/ needs its _base_ files at the same relative place') from None
    _import_custom(cfg)
    if options:
        problems = option_key_problems(cfg, options, top_level_keys)
        if problems:
            raise ConfigKeyError('\n'.join(problems))
        cfg.merge_from_dict(dict(options))
        _import_custom(cfg)
    return cfg


def _import_custom(cfg):
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)


def load_config_or_exit(path, options=None, top_level_keys=None):
    """``load_config`` for the command-line tools: a missing file or an unknown option key
    ends the process with the message (status 1) instead of a traceback."""
    try:
        return load_config(path, options, top_level_keys)
    except (FileNotFoundError, ConfigKeyError) as err:
        raise SystemExit(f'error: {err}') from None
