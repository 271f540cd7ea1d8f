"""Settings of the kubelet plugin: flags with DRANET_* environment twins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dranet.errors import SettingsError
from dranet.paths import DEFAULT_AGENT_SOCKET
from dranet.settings import parse_settings, setting
from dranet_kubelet_plugin.filter import DEFAULT_FILTER


@dataclass(frozen=True)
class PluginSettings:
    driver_name: str = setting(
        "dra.net", "DRA driver name (and attribute domain); dra.net is a drop-in for dranet."
    )
    node_name: str = setting("", "Name of this node (downward API spec.nodeName).")
    kubelet_root_dir: str = setting("/var/lib/kubelet", "The kubelet's --root-dir.")
    agent_socket: str = setting(
        DEFAULT_AGENT_SOCKET, "Unix socket of the netlink agent's private gRPC API."
    )
    state_db: str = setting("/var/lib/dranet/state.db", "Path of the shared claim-state store.")
    filter: str = setting(
        DEFAULT_FILTER,
        "CEL expression over a device's attributes; true publishes it. Empty publishes all.",
    )
    metrics_port: int = setting(
        0, "Port of the Prometheus /metrics endpoint on the host network; 0 (default) disables."
    )
    kubeconfig: str = setting("", "Kubeconfig file; empty uses the in-cluster ServiceAccount.")
    resync_seconds: float = setting(
        30.0, "How often ResourceSlices are re-listed and repaired (e.g. after a kubelet wipe)."
    )
    log_level: str = setting("info", "debug, info, warning or error.")
    log_format: str = setting("text", "text or json.")

    @property
    def plugin_dir(self) -> Path:
        return Path(self.kubelet_root_dir) / "plugins" / self.driver_name

    @property
    def dra_socket(self) -> Path:
        return self.plugin_dir / "dra.sock"

    @property
    def registration_socket(self) -> Path:
        return Path(self.kubelet_root_dir) / "plugins_registry" / f"{self.driver_name}-reg.sock"

    def check(self) -> PluginSettings:
        if not self.node_name:
            raise SettingsError(
                "the node name is not set",
                hint="pass --node-name or set DRANET_NODE_NAME from the downward API",
            )
        if not self.driver_name:
            raise SettingsError("the driver name is empty", hint="use --driver-name=dra.net")
        if self.resync_seconds <= 0:
            raise SettingsError("--resync-seconds must be positive")
        return self


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> PluginSettings:
    return parse_settings(
        PluginSettings,
        argv,
        environ=environ,
        prog="dranet-kubelet-plugin",
        description="dranet kubelet DRA plugin: registration, prepare, ResourceSlices.",
    ).check()
