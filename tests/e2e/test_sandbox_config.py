"""End to end on the node sandbox: what a claim's configuration does inside the pod.

The scenarios of dranet.md §6.2 that need no RDMA/eBPF hardware: advanced
link config (rename, MTU, MAC, GSO/GRO sizes), two NICs from one claim with
per-request configs, IPv6 (configured, and carried over from the node),
policy routing, VRF, permanent neighbours, per-interface sysctls, and an
attach that fails in the pod. Each is checked inside the pod with `ip -j`
or /proc/sys read in the pod netns, and each ends with the NIC back on the
node exactly as before. They share one sandbox: every test leaves the node
as it found it (and `stop_leftovers` stops what a failed one left running).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dranet_sandbox.controlplane import opaque_config
from dranet_sandbox.node import NodeSandbox, Pod
from dranet_sandbox.podruntime import PodStartError

from .scenario_support import (
    dranet_status,
    fabric_ip,
    global_addresses,
    node_ip,
    on_nic,
    only,
    read_sysctl,
    shared_sandbox,
    stop_leftovers,
    vrf_unsupported,
    wait_dad_done,
)

pytestmark = [pytest.mark.root, pytest.mark.runtime, pytest.mark.asyncio(loop_scope="module")]

node = shared_sandbox(nics=2)


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def leave_no_pods(node: NodeSandbox) -> AsyncIterator[None]:
    yield
    await stop_leftovers(node)


def pod_links(node: NodeSandbox, pod: Pod) -> set[str]:
    return {entry["ifname"] for entry in node.pod_ip_json(pod, "link")}


def cni_links(node: NodeSandbox) -> set[str]:
    """What every pod has besides our NICs: containerd's CNI gives it eth0."""
    return {"lo", "eth0"} if node.runtime_info.startswith("containerd") else {"lo"}


async def test_advanced_config_rename_mtu_mac_and_gso_gro_sizes(node: NodeSandbox) -> None:
    nic = node.nics[0]
    before = node.nic_snapshot(nic.name)
    assert before is not None
    wanted = {"mtu": 4321, "address": "00:11:22:33:44:55", "gso_max_size": 196608,
              "gro_max_size": 196608}  # fmt: skip
    assert all(before["link"][k] != v for k, v in wanted.items()), before["link"]
    node.control.create_claim(
        "advanced",
        requests=[on_nic(nic)],
        parameters={
            "interface": {
                "name": "dranet0", "addresses": ["10.200.1.11/24"], "mtu": 4321,
                "hardwareAddr": "00:11:22:33:44:55", "gsoMaxSize": 196608, "groMaxSize": 196608,
            }
        },
    )  # fmt: skip
    pod = await node.start_pod("advanced-pod", ["advanced"])

    [link] = node.pod_ip_json(pod, "-d", "link", "show", "dev", "dranet0")
    assert {k: link[k] for k in wanted} == wanted
    assert link["linkinfo"]["info_kind"] == "veth"
    assert pod_links(node, pod) == cni_links(node) | {"dranet0"}
    [addr] = node.pod_ip_json(pod, "addr", "show", "dev", "dranet0")
    assert global_addresses(addr) == {("10.200.1.11", 24)}
    assert node.ping(pod, nic.fabric_ip)
    [entry] = await node.wait_claim_status("advanced")
    assert entry["networkData"]["interfaceName"] == "dranet0"
    assert entry["networkData"]["hardwareAddress"] == "00:11:22:33:44:55"

    await node.stop_pod(pod)
    assert await node.settled_snapshot(nic.name, before) == before


async def test_two_nics_from_one_claim_each_with_its_request_config(node: NodeSandbox) -> None:
    left, right = node.nics[0], node.nics[1]
    before = {nic.name: node.nic_snapshot(nic.name) for nic in (left, right)}
    node.control.create_claim(
        "pair",
        requests=[on_nic(left, "left"), on_nic(right, "right")],
        config=[
            opaque_config({"interface": {"name": "left0", "addresses": ["10.200.1.20/24"],
                                         "mtu": 1400}}, requests=["left"]),
            opaque_config({"interface": {"name": "right0", "addresses": ["10.200.2.20/24"],
                                         "mtu": 1300}}, requests=["right"]),
        ],
    )  # fmt: skip
    pod = await node.start_pod("pair-pod", ["pair"])

    [result] = pod.prepared.values()
    assert sorted((d.request_names, d.device_name) for d in result.devices) == [
        (("left",), left.name),
        (("right",), right.name),
    ]
    assert pod_links(node, pod) == cni_links(node) | {"left0", "right0"}
    for ifname, mtu, address in (("left0", 1400, "10.200.1.20"), ("right0", 1300, "10.200.2.20")):
        [link] = node.pod_ip_json(pod, "addr", "show", "dev", ifname)
        assert link["mtu"] == mtu
        assert global_addresses(link) == {(address, 24)}
    assert node.nic_snapshot(left.name) is None and node.nic_snapshot(right.name) is None
    assert node.ping(pod, left.fabric_ip) and node.ping(pod, right.fabric_ip)
    entries = await node.wait_claim_status("pair", count=2)
    assert sorted((e["device"], e["networkData"]["interfaceName"]) for e in entries) == [
        (left.name, "left0"),
        (right.name, "right0"),
    ]

    await node.stop_pod(pod)
    for nic in (left, right):
        assert await node.settled_snapshot(nic.name, before[nic.name]) == before[nic.name]


async def test_ipv6_address_subnet_route_gateway_route_and_ping6(node: NodeSandbox) -> None:
    nic = node.nics[0]
    fabric_ip(node, "addr", "replace", "fd00:200:1::1/64", "dev", nic.peer, "nodad")
    before = node.nic_snapshot(nic.name)
    node.control.create_claim(
        "v6",
        requests=[on_nic(nic)],
        parameters={
            "interface": {"name": "net1", "addresses": ["10.200.1.30/24", "fd00:200:1::30/64"]},
            "routes": [{"destination": "fd00:210:1::/48", "gateway": "fd00:200:1::1"}],
        },
    )
    pod = await node.start_pod("v6-pod", ["v6"])

    [link] = node.pod_ip_json(pod, "-6", "addr", "show", "dev", "net1")
    assert global_addresses(link) == {("fd00:200:1::30", 64)}
    routes = node.pod_ip_json(pod, "-6", "route", "show", "dev", "net1")
    # The kernel's subnet route, once (no second one at another metric), and ours.
    only(routes, dst="fd00:200:1::/64")
    assert only(routes, dst="fd00:210:1::/48")["gateway"] == "fd00:200:1::1"
    await wait_dad_done(node, pod, "net1")
    assert node.ping(pod, "fd00:200:1::1")
    assert node.fabric_ping("fd00:200:1::30")
    [entry] = await node.wait_claim_status("v6")
    assert sorted(entry["networkData"]["ips"]) == ["10.200.1.30/24", "fd00:200:1::30/64"]

    await node.stop_pod(pod)
    assert await node.settled_snapshot(nic.name, before) == before


async def test_ipv6_address_of_the_node_nic_comes_along_with_one_subnet_route(
    node: NodeSandbox,
) -> None:
    """§6.2 #18: a /96 on the host NIC, no config: the pod has only the kernel's route."""
    nic = node.nics[1]
    node_ip(node, "addr", "add", "fd00:200:2::2/96", "dev", nic.name, "nodad")
    try:
        before = node.nic_snapshot(nic.name)
        assert before is not None
        assert ("fd00:200:2::2", 96) in {(a["local"], a["prefixlen"]) for a in before["addr"]}
        node.control.create_claim("carried-v6", requests=[on_nic(nic)], parameters={})
        pod = await node.start_pod("carried-v6-pod", ["carried-v6"])

        [link] = node.pod_ip_json(pod, "-6", "addr", "show", "dev", nic.name)
        assert global_addresses(link) == {("fd00:200:2::2", 96)}
        routes = node.pod_ip_json(pod, "-6", "route", "show", "dev", nic.name)
        assert only(routes, dst="fd00:200:2::/96")["protocol"] == "kernel"

        await node.stop_pod(pod)
        assert await node.settled_snapshot(nic.name, before) == before
    finally:  # the NIC must be home to drop the address
        await stop_leftovers(node)
        node_ip(node, "addr", "del", "fd00:200:2::2/96", "dev", nic.name, check=False)


async def test_policy_routing_route_in_table_100_and_a_rule_selecting_it(
    node: NodeSandbox,
) -> None:
    nic = node.nics[0]
    # Only reachable through table 100: the pod's main table has no route to it.
    fabric_ip(node, "addr", "replace", "10.230.0.1/32", "dev", "lo")
    before = node.nic_snapshot(nic.name)
    node.control.create_claim(
        "pbr",
        requests=[on_nic(nic)],
        parameters={
            "interface": {"name": "net1", "addresses": ["10.200.1.40/24"]},
            "routes": [
                {"destination": "10.200.1.0/24", "scope": 253, "table": 100},
                {"destination": "0.0.0.0/0", "gateway": nic.fabric_ip, "table": 100},
            ],
            "rules": [{"priority": 500, "source": "10.200.1.40/32", "table": 100}],
        },
    )
    pod = await node.start_pod("pbr-pod", ["pbr"])

    rule = only(node.pod_ip_json(pod, "rule"), priority=500)
    assert (rule["src"], rule.get("srclen", 32), rule["table"]) == ("10.200.1.40", 32, "100")
    table = node.pod_ip_json(pod, "route", "show", "table", "100")
    assert only(table, dst="default")["gateway"] == nic.fabric_ip
    assert only(table, dst="10.200.1.0/24")["scope"] == "link"
    assert {r["dev"] for r in table} == {"net1"}
    # The rule decides: from net1's address via table 100, from anything else no route.
    assert node.ping(pod, "10.230.0.1") is False
    reply = node.pod_exec(pod, "ping", "-c1", "-W2", "-I", "10.200.1.40", "10.230.0.1", check=False)
    assert reply.returncode == 0, reply.stdout + reply.stderr

    await node.stop_pod(pod)
    assert await node.settled_snapshot(nic.name, before) == before


async def test_vrf_enslaves_the_nic_and_routes_go_to_its_table(node: NodeSandbox) -> None:
    reason = vrf_unsupported()
    if reason:
        pytest.skip(reason)
    nic = node.nics[0]
    before = node.nic_snapshot(nic.name)
    node.control.create_claim(
        "vrf",
        requests=[on_nic(nic)],
        parameters={
            "interface": {"name": "net1", "addresses": ["10.200.1.50/24"],
                          "vrf": {"name": "vrf-blue", "table": 500}},
            "routes": [{"destination": "10.210.9.0/24", "gateway": nic.fabric_ip}],
        },
    )  # fmt: skip
    pod = await node.start_pod("vrf-pod", ["vrf"])

    [link] = node.pod_ip_json(pod, "-d", "link", "show", "dev", "net1")
    assert link["master"] == "vrf-blue"
    [vrf] = node.pod_ip_json(pod, "-d", "link", "show", "dev", "vrf-blue")
    assert vrf["linkinfo"]["info_kind"] == "vrf"
    assert vrf["linkinfo"]["info_data"]["table"] == 500
    table = node.pod_ip_json(pod, "route", "show", "table", "500")
    assert only(table, dst="10.210.9.0/24")["gateway"] == nic.fabric_ip
    only(table, dst="10.200.1.0/24")
    assert not [r for r in node.pod_ip_json(pod, "route") if r.get("dev") == "net1"]
    assert read_sysctl(pod.netns, "net/ipv4/tcp_l3mdev_accept") == "1"
    assert node.pod_exec(pod, "ping", "-c1", "-W2", "-I", "vrf-blue", nic.fabric_ip,
                         check=False).returncode == 0  # fmt: skip

    await node.stop_pod(pod)
    assert await node.settled_snapshot(nic.name, before) == before


async def test_permanent_neighbors_configured_and_carried_from_the_node(
    node: NodeSandbox,
) -> None:
    nic = node.nics[0]
    node_ip(node, "neigh", "replace", "10.200.1.88", "lladdr", "02:00:5e:00:53:03",
            "dev", nic.name, "nud", "permanent")  # fmt: skip
    try:
        before = node.nic_snapshot(nic.name)
        neigh_before = node.node_ip_json("neigh", "show", "dev", nic.name, "nud", "permanent")
        assert [n["dst"] for n in neigh_before] == ["10.200.1.88"]
        node.control.create_claim(
            "neigh",
            requests=[on_nic(nic)],
            parameters={
                "interface": {"name": "net1",
                              "addresses": ["10.200.1.60/24", "fd00:200:1::60/64"]},
                "neighbors": [
                    {"destination": "10.200.1.77", "hardwareAddr": "02:00:5e:00:53:01"},
                    {"destination": "fd00:200:1::77", "hardwareAddr": "0200.5e00.5302"},
                ],
            },
        )  # fmt: skip
        pod = await node.start_pod("neigh-pod", ["neigh"])

        entries = node.pod_ip_json(pod, "neigh", "show", "dev", "net1", "nud", "permanent")
        assert {(n["dst"], n["lladdr"], tuple(n["state"])) for n in entries} == {
            ("10.200.1.77", "02:00:5e:00:53:01", ("PERMANENT",)),
            ("fd00:200:1::77", "02:00:5e:00:53:02", ("PERMANENT",)),
            ("10.200.1.88", "02:00:5e:00:53:03", ("PERMANENT",)),
        }

        await node.stop_pod(pod)
        assert await node.settled_snapshot(nic.name, before) == before
        after = node.node_ip_json("neigh", "show", "dev", nic.name, "nud", "permanent")
        assert after == neigh_before
    finally:
        await stop_leftovers(node)
        node_ip(node, "neigh", "flush", "dev", nic.name, "nud", "permanent", check=False)


async def test_sysctls_arp_ignore_arp_announce_and_forwarding(node: NodeSandbox) -> None:
    nic = node.nics[0]
    names = ("ipv4/conf/{}/arp_ignore", "ipv4/conf/{}/arp_announce",
             "ipv4/conf/{}/forwarding", "ipv6/conf/{}/forwarding")  # fmt: skip
    node_values = {n: read_sysctl(node.node_netns_path, "net/" + n.format(nic.name)) for n in names}
    assert set(node_values.values()) == {"0"}
    before = node.nic_snapshot(nic.name)
    node.control.create_claim(
        "sysctls",
        requests=[on_nic(nic)],
        parameters={"interface": {"name": "net1", "addresses": ["10.200.1.65/24"],
                                  "arpIgnore": 1, "arpAnnounce": 2, "forwarding": True}},
    )  # fmt: skip
    pod = await node.start_pod("sysctls-pod", ["sysctls"])

    in_pod = [read_sysctl(pod.netns, "net/" + n.format("net1")) for n in names]
    assert in_pod == ["1", "2", "1", "1"]
    # Per interface: the pod's defaults are untouched.
    defaults = [read_sysctl(pod.netns, "net/" + n.format("default")) for n in names[:2]]
    assert defaults == ["0", "0"]
    assert node.ping(pod, nic.fabric_ip)

    await node.stop_pod(pod)
    assert await node.settled_snapshot(nic.name, before) == before
    after = {n: read_sysctl(node.node_netns_path, "net/" + n.format(nic.name)) for n in names}
    assert after == node_values


async def test_attach_failure_fails_the_sandbox_naming_the_step_and_restores_the_nic(
    node: NodeSandbox,
) -> None:
    nic = node.nics[0]
    before = node.nic_snapshot(nic.name)
    node.control.create_claim(
        "unreachable",
        requests=[on_nic(nic)],
        parameters={
            "interface": {"name": "net1", "addresses": ["10.200.1.70/24"], "mtu": 1400},
            "routes": [{"destination": "10.99.0.0/16", "gateway": "192.0.2.1"}],
        },
    )
    with pytest.raises(PodStartError) as caught:
        await node.start_pod("unreachable-pod", ["unreachable"])

    error = caught.value
    assert error.stage == "sandbox"
    # The agent's message, relayed by the hook and containerd, names the step.
    assert f"routes failed for device {nic.name}: Network is unreachable" in error.reason
    assert await node.settled_snapshot(nic.name, before) == before
    assert node.runtime is not None and await node.runtime.pod_uids() == []
    assert node.control.claim("default", "unreachable").get("status", {}) == {}
    status = dranet_status(node)
    assert status["attachments"] == [] and status["claims"] == []
    assert nic.name in node.control.published_devices()
