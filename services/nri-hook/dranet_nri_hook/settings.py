"""Settings of the NRI hook: flags with DRANET_* environment twins.

Pre-launched mode (the runtime starts the hook from its plugin directory)
is detected from the runtime's own variables NRI_PLUGIN_SOCKET (an inherited
socket fd), NRI_PLUGIN_NAME and NRI_PLUGIN_IDX, which then win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dranet.errors import SettingsError
from dranet.paths import DEFAULT_AGENT_SOCKET, DEFAULT_NRI_HOOK_HEALTH_SOCKET
from dranet.settings import parse_settings, setting
from dranet.store import DEFAULT_PATH as DEFAULT_STATE_DB
from dranet_nri_hook.plugin import DEFAULT_SOCKET, PluginOptions, check_identity


@dataclass(frozen=True)
class HookSettings:
    nri_socket: str = setting(DEFAULT_SOCKET, "The container runtime's NRI socket.")
    plugin_name: str = setting("dranet", "NRI plugin name ([A-Za-z0-9_.+-]).")
    plugin_index: str = setting("00", "NRI plugin index: two digits; lower runs first.")
    agent_socket: str = setting(
        DEFAULT_AGENT_SOCKET, "Unix socket of the netlink agent's private gRPC API."
    )
    agent_timeout: float = setting(
        1.5, "Seconds an agent call may take; keep it under the runtime's 2 s NRI budget."
    )
    state_db: str = setting(
        DEFAULT_STATE_DB,
        "Claim-state store, read-only: when the agent is unreachable, pods without "
        "prepared claims still start; empty disables this (every pod then fails).",
    )
    health_socket: str = setting(
        DEFAULT_NRI_HOOK_HEALTH_SOCKET,
        "Unix socket of the health-only gRPC server (SERVING while registered with the "
        "runtime); empty disables it.",
    )
    node_name: str = setting("", "Name of this node (downward API); labels traces.")
    registration_timeout: float = setting(5.0, "Seconds to wait for RegisterPlugin's reply.")
    max_backoff: float = setting(10.0, "Longest pause in seconds between reconnect attempts.")
    metrics_port: int = setting(
        0, "Port of the Prometheus /metrics endpoint (hostNetwork: e.g. 9178); 0 disables."
    )
    log_level: str = setting("info", "debug, info, warning or error.")
    log_format: str = setting("text", "text or json.")


def load_settings(argv: Sequence[str] | None = None) -> HookSettings:
    settings = parse_settings(
        HookSettings, argv, prog="dranet-nri-hook", description="dranet's NRI plugin."
    )
    if not 0 < settings.agent_timeout < 2.0:
        raise SettingsError(
            f"--agent-timeout={settings.agent_timeout} must be between 0 and 2 seconds",
            hint="the runtime drops plugins that take longer than its 2 s request timeout",
        )
    check_identity(settings.plugin_name, settings.plugin_index)
    return settings


def plugin_options(
    settings: HookSettings, environ: Mapping[str, str] | None = None
) -> PluginOptions:
    environ = os.environ if environ is None else environ
    fd_text = environ.get("NRI_PLUGIN_SOCKET", "")
    fd: int | None = None
    name, index = settings.plugin_name, settings.plugin_index
    if fd_text:
        try:
            fd = int(fd_text)
        except ValueError:
            raise SettingsError(
                f"NRI_PLUGIN_SOCKET={fd_text!r} is not a file descriptor number",
                hint="only the container runtime should set it",
            ) from None
        name = environ.get("NRI_PLUGIN_NAME") or name
        index = environ.get("NRI_PLUGIN_IDX") or index
    return PluginOptions(
        socket_path=settings.nri_socket,
        socket_fd=fd,
        name=name,
        index=index,
        registration_timeout=settings.registration_timeout,
        max_backoff=settings.max_backoff,
    )
