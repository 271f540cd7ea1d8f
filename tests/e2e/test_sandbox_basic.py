"""End to end on the node sandbox: the three services as processes, a real runtime.

One NIC with a static address and routes (checked inside the pod with
`ip -j`, traffic to the fabric), and an invalid config, which the kubelet
plugin refuses at prepare (NodePrepareResources answers a per-claim error,
so the pod never reaches RunPodSandbox and the NIC never moves).
"""

from __future__ import annotations

import pytest

from dranet_sandbox.node import NodeSandbox
from dranet_sandbox.podruntime import PodStartError

pytestmark = [pytest.mark.root, pytest.mark.runtime]


def route(routes: list[dict[str, object]], dst: str) -> dict[str, object]:
    matches = [r for r in routes if r.get("dst") == dst]
    assert len(matches) == 1, f"{dst} not in {routes}"
    return matches[0]


async def test_one_nic_with_static_address_and_routes(sandbox: NodeSandbox) -> None:
    nic = sandbox.nics[0]
    before = sandbox.nic_snapshot(nic.name)
    sandbox.control.create_claim(
        "static",
        parameters={
            "interface": {"name": "net1", "addresses": ["10.200.1.10/24", "10.220.0.5/32"]},
            "routes": [
                {"destination": "10.201.0.0/16", "gateway": nic.fabric_ip},
                {"destination": "10.202.7.0/24", "scope": 253},
            ],
        },
    )
    pod = await sandbox.start_pod("static-pod", ["static"])

    [link] = sandbox.pod_ip_json(pod, "addr", "show", "dev", "net1")
    assert link["operstate"] == "UP"
    assert link["address"] == before["link"]["address"]  # type: ignore[index]
    addrs = {(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["scope"] == "global"}
    assert addrs == {("10.200.1.10", 24), ("10.220.0.5", 32)}
    routes = sandbox.pod_ip_json(pod, "route", "show", "dev", "net1")
    assert route(routes, "10.201.0.0/16")["gateway"] == nic.fabric_ip
    assert route(routes, "10.202.7.0/24")["scope"] == "link"
    # The node had eth1, and still has the other NIC; the pod keeps its own interfaces.
    assert sandbox.nic_snapshot(nic.name) is None
    assert sandbox.nic_snapshot(sandbox.nics[1].name) is not None
    pod_links = {entry["ifname"] for entry in sandbox.pod_ip_json(pod, "link")}
    expected = (
        {"lo", "net1", "eth0"} if sandbox.runtime_info.startswith("containerd") else {"lo", "net1"}
    )
    assert pod_links == expected
    assert sandbox.ping(pod, nic.fabric_ip)
    assert sandbox.fabric_ping("10.200.1.10")

    [entry] = await sandbox.wait_claim_status("static")
    assert entry["networkData"]["interfaceName"] == "net1"
    assert sorted(entry["networkData"]["ips"]) == ["10.200.1.10/24", "10.220.0.5/32"]

    await sandbox.stop_pod(pod)
    assert await sandbox.settled_snapshot(nic.name, before) == before
    assert sandbox.control.claim("default", "static").get("status", {}) == {}


async def test_invalid_config_fails_the_pod_at_prepare(sandbox: NodeSandbox) -> None:
    nic = sandbox.nics[0]
    before = sandbox.nic_snapshot(nic.name)
    sandbox.control.create_claim(
        "broken",
        parameters={
            "interface": {"name": "net1", "mtu": 40},
            "routes": [{"destination": "10.0.0.0/8"}],
        },
    )
    with pytest.raises(PodStartError) as caught:
        await sandbox.start_pod("broken-pod", ["broken"])

    error = caught.value
    assert error.stage == "prepare"
    assert f"device {nic.name} (request nic): invalid dranet configuration: " in error.reason
    assert "interface.mtu: 40 is below the minimum 68" in error.reason
    assert "routes[0].gateway: required when scope is 0 (universe)" in error.reason
    # The plugin also reports it on the claim, as `kubectl describe` would show.
    events = [e for e in sandbox.api.list("events") if e["involvedObject"]["name"] == "broken"]
    assert [e["reason"] for e in events] == ["ClaimPrepareFailed"]
    assert "interface.mtu: 40 is below the minimum 68" in events[0]["message"]
    # Nothing moved, and the pod was never created in the runtime.
    assert await sandbox.settled_snapshot(nic.name, before) == before
    assert sandbox.pods == {}
    assert sandbox.runtime is not None and await sandbox.runtime.pod_uids() == []
    # The same NIC serves a valid claim right after.
    sandbox.control.create_claim("good", parameters={"interface": {"name": "net1"}})
    pod = await sandbox.start_pod("good-pod", ["good"])
    assert [link["ifname"] for link in sandbox.pod_ip_json(pod, "link", "show", "dev", "net1")] == [
        "net1"
    ]
    await sandbox.stop_pod(pod)
    assert await sandbox.settled_snapshot(nic.name, before) == before
