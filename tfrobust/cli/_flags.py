"""absl flags declared once, from a command's frozen ``Config`` dataclass.

A command module defines ``Config`` (each field made with :func:`setting`: its default and its help
text; a ``tuple`` field becomes a comma-separated list flag), ``run(config) -> dict`` (the work, no
flags read) and ``main(argv)``. ``tfrobust.cli.main`` calls :func:`define` before parsing, so the
flags of a command exist only when that command runs, and importing several command modules in one
process (tests, notebooks) defines no flag at all.

Argument rules live in ``Config.__post_init__`` (with :mod:`tfrobust._validate`); a value they refuse
becomes :class:`ConfigError`, which ``tfrobust.cli.main`` prints as one line with exit code 2, like
absl's own flag errors.
"""

from __future__ import annotations

import dataclasses

from absl import flags

_REQUIRED = dataclasses.MISSING


class ConfigError(ValueError):
    """A flag value the command's ``Config`` refuses (printed as one line, exit code 2)."""


def setting(default=_REQUIRED, help: str = "", *, choices=None):  # noqa: A002 -- absl's word
    """A ``Config`` field: its default (omit it for a required flag), help text and, for strings, choices."""
    meta = {"help": help, "choices": None if choices is None else tuple(choices)}
    if default is _REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def kind_of(field) -> str:
    """``list``, ``bool``, ``int``, ``float`` or ``str`` from the field's annotation (a string under
    PEP 563); a ``tuple`` field is a comma-separated list flag."""
    annotation = field.type if isinstance(field.type, str) else str(field.type)
    if annotation.startswith("tuple"):
        return "list"
    for kind in ("bool", "int", "float", "str"):
        if kind in annotation.replace("None", "").replace("|", " ").split():
            return kind
    raise TypeError(f"Config field {field.name!r} has an unsupported type for a flag: {field.type!r}")


def define(config_cls, module_name: str, flag_values=flags.FLAGS) -> None:
    """Define one absl flag per field of ``config_cls`` (listed under ``module_name`` in ``--help``)."""
    for f in dataclasses.fields(config_cls):
        if f.name in flag_values:
            continue
        required = f.default is _REQUIRED
        default = None if required else f.default
        help_text = f.metadata.get("help", "")
        kind = kind_of(f)
        common = {"flag_values": flag_values, "module_name": module_name}
        if kind == "list":  # the parsed value is a list of strings; Config.__post_init__ converts it
            flags.DEFINE_list(f.name, None if default is None else list(default), help_text, **common)
        elif kind == "str" and f.metadata.get("choices"):
            flags.DEFINE_enum(f.name, default, list(f.metadata["choices"]), help_text, **common)
        elif kind == "str":
            flags.DEFINE_string(f.name, default, help_text, **common)
        elif kind == "bool":
            flags.DEFINE_bool(f.name, default, help_text, **common)
        elif kind == "int":
            flags.DEFINE_integer(f.name, default, help_text, **common)
        else:
            flags.DEFINE_float(f.name, default, help_text, **common)
        if required:
            flags.mark_flag_as_required(f.name, flag_values=flag_values)


def from_flags(config_cls, flag_values=flags.FLAGS):
    """Build ``config_cls`` from parsed flags; a refused value raises :class:`ConfigError`."""
    values = {f.name: flag_values[f.name].value for f in dataclasses.fields(config_cls)}
    try:
        return config_cls(**values)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


def describe(config) -> dict:
    """The config as a JSON-friendly dict (for the reports)."""
    return dataclasses.asdict(config)
