from __future__ import annotations

from pathlib import Path

import pytest

from dranet.errors import SettingsError
from dranet_kubelet_plugin.filter import DEFAULT_FILTER
from dranet_kubelet_plugin.settings import load_settings


def test_defaults_and_paths() -> None:
    settings = load_settings(["--node-name=n1"], environ={})
    assert settings.driver_name == "dra.net" and settings.filter == DEFAULT_FILTER
    assert settings.dra_socket == Path("/var/lib/kubelet/plugins/dra.net/dra.sock")
    assert settings.registration_socket == Path(
        "/var/lib/kubelet/plugins_registry/dra.net-reg.sock"
    )


def test_environment_twins_and_flag_precedence() -> None:
    env = {"DRANET_NODE_NAME": "from-env", "DRANET_FILTER": "", "DRANET_KUBELET_ROOT_DIR": "/k"}
    settings = load_settings(["--driver-name=net.example.com"], environ=env)
    assert settings.node_name == "from-env" and settings.filter == ""
    assert settings.registration_socket == Path("/k/plugins_registry/net.example.com-reg.sock")
    assert load_settings(["--node-name=flag"], environ=env).node_name == "flag"


def test_missing_node_name_is_refused() -> None:
    with pytest.raises(SettingsError, match="node name"):
        load_settings([], environ={})
