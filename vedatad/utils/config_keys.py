"""Strict config sections: an unknown key is an error that names it and suggests a close match.

Every place that reads a config section (``train_cfg``, ``scheduler``, ``model.membank``,
``extract``, a dataset's keyword arguments, ...) checks it with ``check_keys`` or merges it with
``merge_section``, so a typo such as ``train_cfg.epochz`` stops the job before any work instead
of being silently ignored.
"""
import difflib


class ConfigKeyError(ValueError):
    """Unknown or contradictory config keys; the message names every key at fault."""


def unknown_key_messages(section, given, allowed):
    """One line per key of ``given`` not in ``allowed``, with a suggestion when one is close."""
    allowed = sorted(str(k) for k in allowed)
    lines = []
    for key in sorted(str(k) for k in given if k not in allowed):
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean '{section}.{close[0]}'?" if close else ''
        lines.append(f"unknown config key '{section}.{key}'{hint}")
    return lines


def check_keys(section, given, allowed, source=None):
    """Raise ``ConfigKeyError`` listing every unknown key of ``given`` (a mapping or keys).

    ``section``: the dotted name shown to the user (``'train_cfg'``, ``'model.membank'``);
    ``allowed``: the accepted keys; ``source``: optional file or config name for the message.
    """
    lines = unknown_key_messages(section, given or {}, allowed)
    if lines:
        where = f'{source}: ' if source else ''
        raise ConfigKeyError(where + '\n'.join(lines) +
                             f'\n(allowed keys of {section}: {", ".join(sorted(map(str, allowed)))})')


def merge_section(section, defaults, given, source=None):
    """``{**defaults, **given}`` after checking that ``given`` only uses keys of ``defaults``."""
    given = dict(given or {})
    check_keys(section, given, defaults, source)
    return {**defaults, **given}
