"""Service settings: one dataclass per service, flags with environment twins.

Each field of a settings dataclass becomes a flag (`node_name` ->
`--node-name`) with an environment-variable twin (`DRANET_NODE_NAME`), as
Kubernetes drivers do so that a DaemonSet can set either. A flag beats its
environment twin, which beats the default.

    @dataclass(frozen=True)
    class Settings:
        node_name: str = setting("", "Name of this node (downward API).")

    settings = parse_settings(Settings, sys.argv[1:], prog="dranet-x")
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dranet.errors import SettingsError

T = TypeVar("T")
ENV_PREFIX = "DRANET_"


def setting(default: Any, help: str, *, env: str = "") -> Any:
    """A settings field with its help text; `env` overrides the twin's name."""
    meta = {"help": help, "env": env}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def env_name(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("env") or ENV_PREFIX + field.name.upper())


def flag_name(field: dataclasses.Field[Any]) -> str:
    return "--" + field.name.replace("_", "-")


def _convert(kind: Any, raw: str, source: str) -> Any:
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(raw, 0)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        if typing.get_origin(kind) is list:
            return [item.strip() for item in raw.split(",") if item.strip()]
        return raw
    except ValueError as exc:
        raise SettingsError(
            f"{source}={raw!r} is not a valid {getattr(kind, '__name__', kind)}: {exc}",
            hint="fix the flag or environment variable",
        ) from exc


def _field_type(cls: type[Any], field: dataclasses.Field[Any]) -> Any:
    kind = typing.get_type_hints(cls)[field.name]
    if isinstance(kind, types.UnionType):  # `int | None` -> int
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return kind


def build_parser(cls: type[Any], prog: str, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for field in dataclasses.fields(cls):
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        parser.add_argument(
            flag_name(field),
            dest=field.name,
            default=None,
            metavar=field.name.upper(),
            help=f"{field.metadata.get('help', '')} [env {env_name(field)}; default {default!r}]",
        )
    return parser


def parse_settings(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    prog: str = "dranet",
    description: str = "",
) -> T:
    """Builds `cls` from flags, then environment twins, then defaults."""
    environ = os.environ if environ is None else environ
    args = build_parser(cls, prog, description).parse_args(argv)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = _field_type(cls, field)
        flag_value = getattr(args, field.name)
        if flag_value is not None:
            values[field.name] = _convert(kind, flag_value, flag_name(field))
        elif env_name(field) in environ:
            values[field.name] = _convert(kind, environ[env_name(field)], env_name(field))
    return cls(**values)
