"""Without root: `dranet demo` plugs into the CLI by entry point, refuses non-root
clearly, and the sandbox starts the services with flags they actually accept."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from pathlib import Path

import pytest

from dranet import cli
from dranet_kubelet_plugin.settings import load_settings as plugin_settings
from dranet_netlink_agent.settings import load_settings as agent_settings
from dranet_netlink_agent.uplinks import DEFAULT_IGNORE
from dranet_nri_hook.settings import load_settings as hook_settings
from dranet_sandbox import demo
from dranet_sandbox.processes import (
    SandboxPaths,
    agent_argv,
    hook_argv,
    plugin_argv,
    service_env,
)

PATHS = SandboxPaths(Path("/tmp/dranet-sbx-test"))


def entry_points(*values: tuple[str, str]) -> list[importlib.metadata.EntryPoint]:
    return [importlib.metadata.EntryPoint(n, v, cli.ENTRY_POINT_GROUP) for n, v in values]


def test_demo_subcommand_comes_from_the_entry_point_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = entry_points(("demo", "dranet_sandbox.demo:register"))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points)
    args = cli.build_parser().parse_args(["demo", "--json", "--nics", "3", "--runtime", "stand-in"])
    assert args.run is demo.run_command
    assert (args.json, args.keep, args.nics, args.runtime) == (True, False, 3, "stand-in")


def test_a_broken_extension_leaves_the_other_subcommands_working(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    points = entry_points(("broken", "no_such_module_here:register"))
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points)
    args = cli.build_parser().parse_args(["health", "--socket", "/nowhere.sock"])
    assert args.socket == "/nowhere.sock"
    err = capsys.readouterr().err
    assert "subcommand 'broken' (no_such_module_here:register) is unavailable" in err


def test_demo_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert demo.run_command(parser.parse_args(["--json"])) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "dranet demo: needs root" in out.err
    assert demo.main(["--nics", "0"]) == 2


def test_services_accept_the_sandbox_flags() -> None:
    """The DaemonSet-style flags parse with each service's own settings loader."""
    agent_cmd = agent_argv(PATHS, "dn1-node", ("dncni0001", "veth*"), "dn1-node")
    assert agent_cmd[1:4] == ["netns", "exec", "dn1-node"]
    agent = agent_settings(agent_cmd[5:])
    assert agent.socket == str(PATHS.agent_socket)
    assert agent.node_name == "dn1-node"
    # The DaemonSet's default list, plus the sandbox's CNI bridge and its veths.
    assert agent.ignored == (*DEFAULT_IGNORE, "dncni0001", "veth*")
    assert "/var/run/netns/" in agent.roots

    plugin = plugin_settings(plugin_argv(PATHS, "dn1-node")[1:], environ={})
    assert plugin.filter == ""  # the sandbox's NICs are veths: publish everything
    assert plugin.agent_socket == agent.socket
    assert plugin.state_db == agent.state_db
    assert plugin.registration_socket.parent == PATHS.kubelet_root / "plugins_registry"

    hook = hook_settings(hook_argv(PATHS, Path("/tmp/x/nri.sock"), "dn1-node")[1:])
    assert hook.agent_socket == agent.socket
    # Nothing of the sandbox may land in the machine's /run/dranet.
    assert Path(hook.health_socket).is_relative_to(PATHS.base)
    assert (hook.nri_socket, hook.plugin_index, hook.plugin_name) == (
        "/tmp/x/nri.sock",
        "00",
        "dranet",
    )


def test_service_env_passes_otel_but_not_dranet_twins() -> None:
    env = service_env(
        {
            "PATH": "/usr/bin",
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
            "OTEL_SERVICE_NAME": "one-name-for-all",
            "DRANET_FILTER": "false",
            "SECRET_TOKEN": "x",
        }
    )
    assert env == {
        "PATH": "/usr/bin",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "PYTHONUNBUFFERED": "1",
    }
