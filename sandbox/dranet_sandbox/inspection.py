"""Looking into the node sandbox: pods' and the node's network state, claim status.

Commands run in a pod's, the node's or the fabric's netns (`pod_exec`,
`pod_ip_json`, `ping`, `node_ip_json`, `fabric_ping`); `nic_snapshot` and
`settled_snapshot` for restore checks; `wait_published` and
`wait_claim_status` wait on what the driver reports to the API server.
`Inspection` is a part of `NodeSandbox` (`dranet_sandbox.node`), which sets
the attributes it declares.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

from dranet.errors import PeerError
from dranet_sandbox.controlplane import ControlPlane
from dranet_sandbox.netlab import NetLab, ip_json
from dranet_sandbox.netview import in_netns, nic_snapshot
from dranet_sandbox.podsteps import Pod
from dranet_sandbox.processes import ServiceProcess


class Inspection:
    """The inspection helpers of `NodeSandbox`."""

    # Set by NodeSandbox.
    namespace: str
    lab: NetLab
    control: ControlPlane
    services: dict[str, ServiceProcess]

    async def wait_published(self, devices: list[str], timeout: float = 20) -> None:
        """Waits until this node's ResourceSlices hold (at least) `devices`."""
        deadline = time.monotonic() + timeout
        while not set(devices) <= set(self.control.published_devices()):
            self.services["plugin"].check_alive()
            if time.monotonic() > deadline:
                raise PeerError(
                    f"devices {devices} not published within {timeout}s "
                    f"(published: {self.control.published_devices()}):\n"
                    f"{self.services['plugin'].log_text()}\n{self.services['agent'].log_text()}"
                )
            await asyncio.sleep(0.1)

    def pod_exec(self, pod: Pod, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if not pod.netns:
            raise PeerError(f"pod {pod.name} has no sandbox")
        return in_netns(pod.netns, *cmd, check=check)

    def pod_ip_json(self, pod: Pod, *args: str) -> list[dict[str, Any]]:
        out = self.pod_exec(pod, "ip", "-j", *args).stdout.strip()
        return list(json.loads(out)) if out else []

    def ping(self, pod: Pod, address: str, count: int = 1, wait: float = 2) -> bool:
        done = self.pod_exec(pod, "ping", "-c", str(count), "-W", str(wait), address, check=False)
        return done.returncode == 0

    def node_ip_json(self, *args: str) -> list[dict[str, Any]]:
        return ip_json(*args, netns=self.lab.node)

    def fabric_ping(self, address: str) -> bool:
        """Ping from the fabric netns (e.g. to a pod's net1 address)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.lab.fabric, "ping", "-c", "1", "-W", "2", address],
            check=False, capture_output=True,
        )  # fmt: skip
        return done.returncode == 0

    def nic_snapshot(self, ifname: str) -> dict[str, Any] | None:
        return nic_snapshot(self.lab.node, ifname)

    async def settled_snapshot(
        self, ifname: str, like: dict[str, Any] | None, *, timeout: float = 5
    ) -> dict[str, Any] | None:
        """The NIC's snapshot once it equals `like`, or the last one after `timeout`.

        The kernel finishes some state on its own after a restore: an IPv6
        link-local address gets its local-table route only once duplicate
        address detection is over (about a second on veth).
        """
        deadline = time.monotonic() + timeout
        while True:
            snap = self.nic_snapshot(ifname)
            if snap == like or time.monotonic() > deadline:
                return snap
            await asyncio.sleep(0.1)

    async def wait_claim_status(
        self, claim: str, *, count: int = 1, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """Waits until the claim's status.devices has `count` entries (0: cleared)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.control.claim(self.namespace, claim).get("status") or {}
            devices = list(status.get("devices") or [])
            if len(devices) == count:
                return devices
            if time.monotonic() > deadline:
                raise PeerError(
                    f"claim {claim}: status.devices has {len(devices)} entries, "
                    f"expected {count} after {timeout}s:\n{self.services['plugin'].log_text()}"
                )
            await asyncio.sleep(0.1)
