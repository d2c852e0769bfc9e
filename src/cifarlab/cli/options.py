"""Options shared by several commands: one option per setting (train), and --tta."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from cifarlab.models import TTA_CHOICES
from cifarlab.runs import DEFAULT_PRESET, Config, make_config, option_name
from cifarlab.runs.config import field_types, setting_sections


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per Config field, grouped by the settings' sections, its default the
    default preset's; unset options leave the preset's value alone."""
    groups = {}
    for title, names in setting_sections():
        group = parser.add_argument_group(f"settings: {title}")
        groups.update(dict.fromkeys(names, group))
    defaults = make_config(DEFAULT_PRESET)
    hints = field_types()
    for f in dataclasses.fields(Config):
        if f.name == "preset":
            continue
        group = groups[f.name]
        hint = hints[f.name]
        default = getattr(defaults, f.name)
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        if isinstance(default, dict):
            shown = json.dumps(default)
        help_text = f.metadata["help"] + ("" if default is None else f" (default: {shown})")
        kw: dict[str, typing.Any] = dict(default=argparse.SUPPRESS,
                                         help=help_text.replace("%", "%%"))
        if hint is bool or hint == (bool | None):
            group.add_argument(option_name(f.name), action=argparse.BooleanOptionalAction, **kw)
            continue
        tuple_hint = next((h for h in (hint, *typing.get_args(hint))
                           if typing.get_origin(h) is tuple), None)  # also `tuple | None`
        if tuple_hint is not None:
            args = typing.get_args(tuple_hint)
            kw.update(nargs="+" if args[-1] is Ellipsis else len(args), metavar="X")
        elif "choices" in f.metadata:
            kw.update(choices=f.metadata["choices"])
        else:
            kw.update(metavar=f.name.upper())
        group.add_argument(option_name(f.name), **kw)


def add_tta(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--tta for commands that use a trained run."""
    parser.add_argument("--tta", choices=TTA_CHOICES, help=help_text)


def settings_of(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The settings given as options (only those given: unset ones are absent); --preset is
    not among them, as it says where the settings start from."""
    names = {f.name for f in dataclasses.fields(Config)} - {"preset"}
    return {k: v for k, v in vars(args).items() if k in names}
