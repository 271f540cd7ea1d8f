"""Small helpers shared by the netconfig tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dranet.errors import ConfigError
from dranet.netconfig import NetworkConfig, parse_config


def problems(raw: Any) -> list[str]:
    """Every problem parse_config reports for `raw`, as `path: message` strings."""
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.problems, "ConfigError without problems"
    return [str(p) for p in info.value.problems]


def paths(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return [p.path for p in info.value.problems]


def iface(**fields: Any) -> dict[str, Any]:
    return {"interface": fields}


def parse_both(doc: dict[str, Any]) -> NetworkConfig:
    """Parse a document as a mapping and as JSON text and bytes; all three must agree."""
    text = json.dumps(doc)
    cfg = parse_config(doc)
    assert parse_config(text) == cfg
    assert parse_config(text.encode()) == cfg
    return cfg
