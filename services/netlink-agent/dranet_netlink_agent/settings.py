"""Settings of the netlink agent: flags with DRANET_* environment twins.

Test hook: `--crash-at` / DRANET_AGENT_CRASH_AT = `pending` or `moved` makes
the agent SIGKILL itself right after writing the write-ahead row (`pending`)
or right after moving the device into the pod (`moved`), so tests can prove
the restarted agent converges. Never set it in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dranet.errors import SettingsError
from dranet.paths import DEFAULT_AGENT_SOCKET
from dranet.settings import parse_settings, setting
from dranet_netlink_agent.netnspaths import DEFAULT_ROOTS
from dranet_netlink_agent.uplinks import DEFAULT_IGNORE

CRASH_POINTS = ("", "pending", "moved")


@dataclass(frozen=True)
class AgentSettings:
    socket: str = setting(
        DEFAULT_AGENT_SOCKET, "Unix socket of the private gRPC API (its directory is made 0750)."
    )
    node_name: str = setting("", "Name of this node (downward API); labels traces.")
    state_db: str = setting("/var/lib/dranet/state.db", "The claim-state store (SQLite).")
    netns_roots: str = setting(
        ",".join(DEFAULT_ROOTS),
        "Comma-separated allowed pod netns roots; /proc/<pid>/ns/net allows pid namespaces.",
    )
    node_netns: str = setting(
        "", "Network namespace whose interfaces are the node's NICs; empty: the agent's own."
    )
    ignore: str = setting(
        ",".join(DEFAULT_IGNORE),
        "Comma-separated interface names or shell globs never offered (CNI/container bridges).",
    )
    sysctl_root: str = setting(
        "/proc/sys",
        "Where a writable procfs sys/ is (a container's /proc/sys is read-only).",
    )
    sysfs_root: str = setting("/sys", "Root of sysfs (tests point it at fixtures).")
    resync_interval: float = setting(60.0, "Seconds between full inventory rescans.")
    socket_group: int = setting(-1, "Group id owning the socket (0660); -1 keeps ours.")
    metrics_port: int = setting(0, "Port of the Prometheus /metrics endpoint; 0 disables.")
    log_level: str = setting("info", "debug, info, warning or error.")
    log_format: str = setting("text", "text or json.")
    crash_at: str = setting(
        "", "TEST HOOK: SIGKILL self at 'pending' or 'moved'.", env="DRANET_AGENT_CRASH_AT"
    )

    @property
    def roots(self) -> tuple[str, ...]:
        return _items(self.netns_roots)

    @property
    def ignored(self) -> tuple[str, ...]:
        return _items(self.ignore)


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def load_settings(argv: Sequence[str] | None = None) -> AgentSettings:
    settings = parse_settings(
        AgentSettings,
        argv,
        prog="dranet-netlink-agent",
        description="dranet's netlink agent: the only process that changes the network.",
    )
    if settings.crash_at not in CRASH_POINTS:
        raise SettingsError(
            f"DRANET_AGENT_CRASH_AT={settings.crash_at!r} is not a crash point",
            hint="use pending, moved or leave it empty",
        )
    if not settings.roots:
        raise SettingsError("--netns-roots is empty", hint="the agent could attach nothing")
    if settings.resync_interval <= 0:
        raise SettingsError(f"--resync-interval={settings.resync_interval} must be positive")
    return settings
