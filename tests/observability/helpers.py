"""Helpers for the observability tests: real service processes, the OTLP stand-in.

`receiver` is an OtlpReceiver listening on 127.0.0.1 and on a unix socket
(the agent runs inside the lab's node netns, where 127.0.0.1 is not ours).
`Service` runs one console script with flags and environment, its output in
a log file; `scrape` reads a Prometheus endpoint (from inside a netns when
asked) into samples; `health` asks a socket's gRPC health.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dranet.cli import check_health
from dranet_netlink_agent.netns import run_in_netns
from dranet_sandbox.netlab import NetLab

BIN = Path(sys.executable).parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This environment without DRANET_*/OTEL_* (the test decides), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRANET_", "OTEL_"))}
    env.update(extra)
    return env


class Service:
    """One service process from its console script; `stop()` is SIGTERM and must exit 0."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, dict(env), log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Service:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.output()}")

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.output()}") from None


def agent_service(lab: NetLab, sockdir: Path, env: Mapping[str, str], *flags: str) -> Service:
    """The netlink agent inside the lab's node netns, as the sandbox runs it."""
    argv = ["ip", "netns", "exec", lab.node, str(BIN / "dranet-netlink-agent"),
            f"--socket={sockdir / 'agent' / 'agent.sock'}",
            f"--state-db={sockdir / 'state.db'}",
            "--resync-interval=30", "--log-level=debug", *flags]  # fmt: skip
    return Service("agent", argv, env, sockdir / "agent.log")


def health(path: Path, service: str = "") -> str | None:
    """None when SERVING, else what `dranet health` would say."""
    return check_health(path, service, timeout=2.0)


async def wait_health(
    path: Path, *, serving: bool, timeout: float = 20.0, service: Service | None = None
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if service is not None:
            service.check_alive()
        problem = await asyncio.to_thread(health, path)
        if (problem is None) == serving:
            return
        if asyncio.get_running_loop().time() > deadline:
            want = "SERVING" if serving else "not SERVING"
            extra = service.output() if service is not None else ""
            raise AssertionError(f"{path} not {want} within {timeout}s: {problem}\n{extra}")
        await asyncio.sleep(0.1)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


def scrape(port: int, netns_path: str | None = None) -> Samples:
    """Every sample of http://127.0.0.1:<port>/metrics (inside `netns_path` if given)."""
    url = f"http://127.0.0.1:{port}/metrics"
    text = _get(url) if netns_path is None else run_in_netns(netns_path, lambda: _get(url))
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
