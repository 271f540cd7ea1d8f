"""docs/operations.md lists every setting of every service, with its flag and env twin."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from dranet.settings import env_name, flag_name

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
MODULES = ["dranet_netlink_agent.settings", "dranet_kubelet_plugin.settings",
           "dranet_nri_hook.settings"]  # fmt: skip


def _settings_class(module: str) -> type:
    mod = importlib.import_module(module)
    found = [
        v for v in vars(mod).values()
        if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == module
    ]  # fmt: skip
    assert len(found) == 1, f"{module}: expected one settings dataclass"
    return found[0]


@pytest.mark.parametrize("module", MODULES)
def test_every_setting_is_documented_as_flag_and_env(module: str) -> None:
    missing = [
        f"{flag_name(f)} / {env_name(f)}"
        for f in dataclasses.fields(_settings_class(module))
        if f"| `{flag_name(f)}` | `{env_name(f)}` |" not in DOC
    ]
    assert not missing, f"docs/operations.md lacks rows for {missing}"
