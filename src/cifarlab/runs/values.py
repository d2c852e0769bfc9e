"""Setting values as they arrive from config files and the command line: files read (TOML,
YAML or JSON), and strings converted to each setting's declared type, with one-line errors."""

from __future__ import annotations

import json
import numbers
import os
import types
import typing
from pathlib import Path
from typing import Any

from cifarlab.errors import ConfigError


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a value read from a file or the command line to the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        return coerce(name, value, hint)
    try:
        if origin is tuple:
            return _coerce_tuple(name, value, args)
        if hint is dict or origin is dict:
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a mapping")
            return dict(value)
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ConfigError(f"{name} must be true or false, not {value!r}")
                return value.lower() in ("true", "yes", "1", "on")
            _check_kind(name, value, (bool,), "true or false")
            return value
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name} must be a whole number, not {value}")
        if not isinstance(value, str):  # a file's value: of the setting's kind, never converted
            _check_kind(name, value, KINDS.get(hint, (hint,)), KIND_NAMES.get(hint, "a value"))
        return hint(value)
    except (TypeError, ValueError, json.JSONDecodeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{name}: cannot read {value!r} as {getattr(hint, '__name__', hint)}"
                          ) from None


# What a file's value may be for a setting of each type (bool is an int to Python: not here).
# From Python also paths, and NumPy's numbers (numbers.Real counts them).
KINDS = {int: (numbers.Real,), float: (numbers.Real,), str: (str, os.PathLike)}
KIND_NAMES = {int: "a whole number", float: "a number", str: "a string"}


def _check_kind(name: str, value: Any, kinds: tuple, said: str) -> None:
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ConfigError(f"{name} must be {said}, not {value!r}")


def _coerce_tuple(name: str, value: Any, args: tuple) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if args[-1] is Ellipsis:  # any number of one type; a lone value is one of them
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        args = (args[0],) * len(value)
    if len(value) != len(args):
        raise ConfigError(f"{name} needs {len(args)} values, got {len(value)}")
    return tuple(coerce(name, v, a) for a, v in zip(args, value, strict=True))


MAX_CONFIG_BYTES = 10**6
WHERE_IT_RAN = ("data_dir", "run_dir")  # a package's settings that only held on its machine


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Settings from a .toml, .yaml/.yml or .json file (same names as the Config fields), or
    the run's settings in a model package's config.json."""
    p = Path(path)
    if p.exists() and (not p.is_file() or p.stat().st_size > MAX_CONFIG_BYTES):
        raise ConfigError(f"config file {p} is not a settings file (a folder, a pipe, or over "
                          f"{MAX_CONFIG_BYTES // 10**6} MB)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {getattr(e, 'strerror', None) or e}"
                          ) from None
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            # Aliases let a few hundred bytes expand a thousandfold per level (a YAML bomb);
            # a settings file has no use for them.
            if any(isinstance(t, yaml.AliasToken) for t in yaml.scan(text)):
                raise ConfigError(f"config file {p} uses YAML aliases (*name); write the "
                                  "values out")
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {p} must end in .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as e:  # parser errors of three libraries; all mean "fix the file"
        raise ConfigError(f"config file {p} is not valid {p.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of settings")
    package = data.get("cifarlab")
    if isinstance(package, dict) and isinstance(package.get("settings"), dict):
        # a model package's config.json: its run's settings, less where that run was kept
        return {k: v for k, v in package["settings"].items() if k not in WHERE_IT_RAN}
    return data


def option_name(name: str) -> str:
    """The command-line option of a Config field: num_threads -> --num-threads."""
    return "--" + name.replace("_", "-")


def as_argv(settings: dict[str, typing.Any]) -> list[str]:
    """Settings as the `cifarlab train` options that set them, one argument per item."""
    argv: list[str] = []
    for name, value in settings.items():
        if isinstance(value, bool):
            argv.append(option_name(name) if value else option_name("no_" + name))
        elif isinstance(value, (list, tuple)):
            argv += [option_name(name), *map(str, value)]
        else:
            text = json.dumps(value) if isinstance(value, dict) else str(value)
            argv += [option_name(name), "none" if value is None else text]
    return argv
