"""Shared pieces of the e2e scenario modules (test_sandbox_config.py, ...).

- `shared_sandbox(nics)`: a module-scoped NodeSandbox fixture, set up like
  conftest's `sandbox_factory` (containerd in CI, a set-up failure then
  fails), for scenarios that leave the node as they found it. Modules using
  it mark their tests `asyncio(loop_scope="module")`: the sandbox's gRPC
  channels live on the module's event loop.
- `stop_leftovers`: stops what a failed test left running, so one failure
  does not hold a NIC and fail the rest of the module.
- small lookups over `ip -j` output, sysctls read inside a netns, and
  `dranet status --json` run against the sandbox's agent socket and store.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dranet_sandbox.controlplane import DeviceRequest
from dranet_sandbox.netlab import ip
from dranet_sandbox.node import NodeNic, NodeSandbox, Pod, in_netns

from .conftest import IN_CI, default_runtime

DRANET_CLI = Path(sys.executable).parent / "dranet"


def shared_sandbox(nics: int = 2) -> Any:
    """A module-scoped `NodeSandbox` fixture with `nics` NICs."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def fixture() -> AsyncIterator[NodeSandbox]:
        node = NodeSandbox(nics, runtime=default_runtime(), log_level="info")
        try:
            await node.start()
        except Exception as exc:
            if IN_CI:
                pytest.fail(f"CI=true but the node sandbox could not be set up: {exc}")
            pytest.skip(f"the node sandbox could not be set up: {exc}")
        try:
            await wait_nics_settled(node)
            yield node
        finally:
            await node.close()

    return fixture


async def stop_leftovers(node: NodeSandbox) -> None:
    for pod in list(node.pods.values()):
        await node.stop_pod(pod)


def on_nic(nic: NodeNic, request: str = "nic") -> DeviceRequest:
    """A request that the allocator can only satisfy with `nic`."""
    return DeviceRequest(
        request, selectors=(f'device.attributes["dra.net"].ifName == "{nic.name}"',)
    )


def only(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The one entry whose fields equal `match`; fails showing all entries otherwise."""
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one entry with {match}, got {len(found)} in {entries}"
    return found[0]


def global_addresses(link: dict[str, Any]) -> set[tuple[str, int]]:
    return {(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["scope"] == "global"}


def read_sysctl(netns_path: str, name: str) -> str:
    """`cat /proc/sys/<name>` from inside the netns (/proc/sys/net is the reader's netns)."""
    return in_netns(netns_path, "cat", f"/proc/sys/{name}").stdout.strip()


def fabric_ip(node: NodeSandbox, *args: str) -> None:
    """`ip ...` in the sandbox's fabric netns (the NICs' far ends)."""
    ip(*args, netns=node.lab.fabric)


def node_ip(node: NodeSandbox, *args: str, check: bool = True) -> None:
    ip(*args, netns=node.lab.node, check=check)


def dranet_status(node: NodeSandbox) -> dict[str, Any]:
    """`dranet status --json` against the sandbox's agent socket and claim-state store."""
    done = subprocess.run(
        [str(DRANET_CLI), "status", "--json", f"--agent-socket={node.paths.agent_socket}",
         f"--state-db={node.paths.state_db}"],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert done.stdout.strip(), f"dranet status printed nothing: {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


def vrf_unsupported() -> str:
    """Why this kernel cannot make a VRF device ('' when it can), tried in a throwaway netns."""
    probe = f"dranet-vrf-{secrets.token_hex(3)}"
    ip("netns", "add", probe)
    try:
        done = ip(
            "link", "add", "vrf-probe", "type", "vrf", "table", "10", netns=probe, check=False
        )
    finally:
        ip("netns", "del", probe, check=False)
    if done.returncode == 0:
        return ""
    return f"this kernel cannot create a VRF device: {done.stderr.strip()}"


async def wait_dad_done(node: NodeSandbox, pod: Pod, ifname: str, timeout: float = 5) -> None:
    """Until no IPv6 address of `ifname` in the pod is tentative (DAD takes ~1 s on veth)."""

    def settled() -> bool:
        links = node.pod_ip_json(pod, "-6", "addr", "show", "dev", ifname)
        return not any(a.get("tentative") for link in links for a in link["addr_info"])

    await wait_until(settled, f"duplicate address detection on {ifname}", timeout)


async def wait_nics_settled(node: NodeSandbox, timeout: float = 5) -> None:
    """Until the node's NICs finished DAD of their link-local addresses: only then does
    the kernel add their local routes, which a snapshot taken earlier would miss."""

    def settled() -> bool:
        for nic in node.nics:
            for link in node.node_ip_json("-6", "addr", "show", "dev", nic.name):
                if any(a.get("tentative") for a in link["addr_info"]):
                    return False
        return True

    await wait_until(settled, "DAD on the node's NICs", timeout)
