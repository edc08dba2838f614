"""Command-line options generated from a config dataclass, so each default and help line is written once.

Each field becomes ``--field-name`` (``metadata["flag"]`` renames it); its help shows the default. A bool
that defaults to True becomes ``--no-field-name``, one that defaults to False ``--field-name``; a list is
repeatable. ``metadata["cli"] = False`` keeps a field off the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from leaf_hub.errors import ConfigError


def flag(field_name: str, cls: type | None = None) -> str:
    """The command-line flag of a config field."""
    if cls is not None:
        for f in dataclasses.fields(cls):
            if f.name == field_name and "flag" in f.metadata:
                return "--" + f.metadata["flag"]
    return "--" + field_name.replace("_", "-")


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int, ``list[str]`` -> list, ``Path`` -> Path."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(inner)
    return origin or annotation


_METAVARS = {int: "N", float: "X"}


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " + ".join(map(str, value))
    return str(value)


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    only: list[str] | None = None,
    required: tuple[str, ...] = (),
) -> None:
    """Add an option for each field of ``cls`` (or of ``only``, in that order)."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    for name in only or list(by_name):
        f = by_name[name]
        if not f.metadata.get("cli", True):
            continue
        kind = _base_type(hints[name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help_text = f.metadata.get("help", "")
        opts: dict[str, Any] = {"dest": name}
        if kind is bool:
            opts["action"] = "store_false" if default else "store_true"
            option = flag(name, cls) if not default else "--no-" + name.replace("_", "-")
            parser.add_argument(
                option, help=f.metadata.get("no_help", help_text) if default else help_text, **opts
            )
            continue
        option = flag(name, cls)
        if name in required or default is dataclasses.MISSING:
            opts["required"] = True
        elif "default" not in help_text:
            help_text += f" (default: {_default_text(default)})"
        if kind is list:
            opts["action"] = "append"  # None when not given: config_from_args keeps the field's default list
            if "parse" in f.metadata:  # each value parsed (e.g. "1,2,4" -> [1, 2, 4]); the config flattens
                opts["type"] = _argparse_type(f.metadata["parse"])
        else:
            opts["default"] = None if default is dataclasses.MISSING else default
            opts["type"] = _argparse_type(f.metadata.get("parse")) or kind
        if "choices" in f.metadata:
            opts["choices"] = f.metadata["choices"]
        if "choices" not in f.metadata:
            opts["metavar"] = f.metadata.get("metavar") or _METAVARS.get(kind) or name.upper().split("_")[-1]
        parser.add_argument(option, help=help_text, **opts)


def _argparse_type(parse):
    """A parse function whose ValueError message argparse shows as it is."""
    if parse is None:
        return None

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def config_from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of ``cls`` from the parsed options it declares (absent ones keep their defaults)."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) and hasattr(args, f.name):
            value = getattr(args, f.name)
            if (
                value is None
                and f.default is dataclasses.MISSING
                and f.default_factory is not dataclasses.MISSING
            ):
                continue  # a repeatable option not given: the field's default list
            values[f.name] = value
    return cls(**values, **extra)


def flag_message(error: ConfigError, *classes: type) -> str:
    """The error's message with the option written as its command-line flag."""
    for cls in classes:
        if any(f.name == error.option for f in dataclasses.fields(cls)):
            return error.for_flag(flag(error.option, cls))
    return error.for_flag(flag(error.option))
