"""The three dranet services as real processes, with the flags a DaemonSet gives them.

`agent_argv`, `plugin_argv` and `hook_argv` are pure: they turn a
`SandboxPaths` (where the node sandbox keeps its sockets, store and logs)
into the command lines of `dranet-netlink-agent`, `dranet-kubelet-plugin`
and `dranet-nri-hook`, the console scripts next to this interpreter.
`service_env` is the environment they get: the caller's `OTEL_*` variables
(so `OTEL_TRACES_EXPORTER=console make demo` traces all three) plus PATH and
locale, without `DRANET_*` twins that could silently override the flags and
without `OTEL_SERVICE_NAME`, which would give all three the same name (in
the DaemonSet each container names itself).

`ServiceProcess` runs one of them in its own session (so a Ctrl-C in the
terminal reaches only the sandbox, which then stops pods *before* the
services), logs to a file, and stops it with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dranet.errors import PeerError
from dranet_netlink_agent.uplinks import DEFAULT_IGNORE as AGENT_DEFAULT_IGNORE

BIN = Path(sys.executable).parent
DRIVER = "dra.net"
NRI_PLUGIN_NAME = "dranet"
NRI_PLUGIN_INDEX = "00"
# The agent may enter these pod namespaces: containerd's /var/run/netns/cni-*,
# NetLab's /run/netns/* (the same directory on Debian) and /proc/<pid>/ns/net.
NETNS_ROOTS = "/var/run/netns/,/run/netns/,/proc/<pid>/ns/net"
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH")


@dataclass(frozen=True)
class SandboxPaths:
    """Where one sandbox keeps everything; `base` is a short temp dir (unix socket limit)."""

    base: Path

    @property
    def run_dir(self) -> Path:
        """The private socket dir (the DaemonSet's emptyDir, mounted at /run/dranet)."""
        return self.base / "run"

    @property
    def agent_socket(self) -> Path:
        """In a directory of its own, which the agent makes 0750 (as /run/dranet/agent/)."""
        return self.run_dir / "agent" / "agent.sock"

    @property
    def hook_health_socket(self) -> Path:
        return self.run_dir / "nri-hook" / "health.sock"

    @property
    def state_db(self) -> Path:
        return self.base / "state" / "state.db"

    @property
    def kubelet_root(self) -> Path:
        return self.base / "kubelet"

    @property
    def kubeconfig(self) -> Path:
        return self.base / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def runtime_dir(self) -> Path:
        """containerd's base dir, or the NRI stand-in's socket dir."""
        return self.base / "rt"

    def make(self) -> SandboxPaths:
        for path in (self.run_dir, self.state_db.parent, self.kubelet_root, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o750)
        return self


def service_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH, locale and every OTEL_* variable but OTEL_SERVICE_NAME (see module doc)."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k in KEPT_ENV}
    env.update(
        (k, v) for k, v in environ.items() if k.startswith("OTEL_") and k != "OTEL_SERVICE_NAME"
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def agent_argv(
    paths: SandboxPaths,
    node_netns: str,
    ignore: tuple[str, ...],
    node_name: str = "",
    log_level: str = "info",
) -> list[str]:
    """The agent inside the node netns (`ip netns exec` also mounts that netns' sysfs).

    `ignore` comes on top of the agent's own default list (CNI bridges)."""
    return [
        shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", node_netns,
        str(BIN / "dranet-netlink-agent"),
        f"--socket={paths.agent_socket}",
        f"--node-name={node_name}",
        f"--state-db={paths.state_db}",
        f"--netns-roots={NETNS_ROOTS}",
        f"--ignore={','.join((*AGENT_DEFAULT_IGNORE, *ignore))}",
        "--metrics-port=0",
        f"--log-level={log_level}",
    ]  # fmt: skip


def plugin_argv(paths: SandboxPaths, node_name: str, log_level: str = "info") -> list[str]:
    """The kubelet plugin; `--filter=` publishes veths, which are this sandbox's NICs."""
    return [
        str(BIN / "dranet-kubelet-plugin"),
        f"--driver-name={DRIVER}",
        f"--node-name={node_name}",
        f"--kubelet-root-dir={paths.kubelet_root}",
        f"--agent-socket={paths.agent_socket}",
        f"--state-db={paths.state_db}",
        f"--kubeconfig={paths.kubeconfig}",
        "--filter=",
        "--metrics-port=0",
        f"--log-level={log_level}",
    ]


def hook_argv(
    paths: SandboxPaths, nri_socket: Path, node_name: str = "", log_level: str = "info"
) -> list[str]:
    return [
        str(BIN / "dranet-nri-hook"),
        f"--nri-socket={nri_socket}",
        f"--agent-socket={paths.agent_socket}",
        f"--health-socket={paths.hook_health_socket}",
        f"--state-db={paths.state_db}",
        f"--node-name={node_name}",
        f"--plugin-name={NRI_PLUGIN_NAME}",
        f"--plugin-index={NRI_PLUGIN_INDEX}",
        "--max-backoff=0.5",
        "--metrics-port=0",
        f"--log-level={log_level}",
    ]


@dataclass
class ServiceProcess:
    """One service process; `start()`, `stop()`, `log_text()`."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=service_env)
    proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def log_text(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        """Raises with the log's tail when the process has exited."""
        if self.proc is not None and self.proc.returncode is not None:
            raise PeerError(
                f"{self.name} exited with code {self.proc.returncode}:\n{self.log_text()}",
                hint=f"see {self.log_path}",
            )

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode
