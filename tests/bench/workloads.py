"""Realistic inputs for the benchmarks, built once per test (never inside the timed code).

Each builder makes what the driver really handles: claim configs as a
ResourceClaim carries them, agent `Device` messages for a node full of PCI
NICs, pods as containerd's NRI sends them, and store records as the plugin and
the agent write them. `i` varies the values so no two items are identical.
"""

from __future__ import annotations

import math
from typing import Any

from dranet.agent.v1 import agent_pb2
from dranet.nri import api_pb2
from dranet.store import AttachmentPhase, AttachmentRecord, ClaimRecord, PreparedDevice

DRIVER = "dra.net"
NODE = "node-a"
NODE_UID = "5f0c7a0e-8f38-4c1e-9d57-0b3c1d2e4f60"


# --- claim configs -------------------------------------------------------------


def full_config(i: int = 0) -> dict[str, Any]:
    """Every commonly used field: two addresses, MTU, offloads, routes, a rule, ethtool."""
    net = i % 250
    return {
        "interface": {
            "name": "net1",
            "addresses": [f"192.168.{net}.2/24", f"fd00:{net:x}::2/64"],
            "mtu": 9000,
            "hardwareAddr": f"02:00:5e:00:{net:02x}:02",
            "gsoMaxSize": 65536,
            "groMaxSize": 65536,
            "forwarding": False,
            "arpIgnore": 1,
            "arpAnnounce": 2,
        },
        "routes": [
            {"destination": "10.0.0.0/8", "gateway": f"192.168.{net}.1"},
            {"destination": "fd10::/48", "gateway": f"fd00:{net:x}::1"},
            {"destination": f"172.16.{net}.0/24", "gateway": f"192.168.{net}.1", "table": 100},
        ],
        "rules": [{"priority": 100, "source": f"192.168.{net}.0/24", "table": 100}],
        "neighbors": [{"destination": f"192.168.{net}.1", "hardwareAddr": "02:00:5e:00:53:01"}],
        "ethtool": {"features": {"rx-gro-hw": True, "tx-checksum-ip-generic": False}},
    }


def large_config(routes: int = 256, rules: int = 64, neighbors: int = 128) -> dict[str, Any]:
    """A routing-heavy config: hundreds of routes, many policy rules and static neighbors."""
    return {
        "interface": {"name": "net1", "addresses": ["192.168.50.2/24"], "mtu": 9000},
        "routes": [
            {
                "destination": f"10.{r // 256}.{r % 256}.0/24",
                "gateway": "192.168.50.1",
                "table": 100 + r % 8,
            }
            for r in range(routes)
        ],
        "rules": [
            {"priority": 1000 + r, "destination": f"10.{r}.0.0/16", "table": 100 + r % 8}
            for r in range(rules)
        ],
        "neighbors": [
            {
                "destination": f"192.168.50.{10 + n}",
                "hardwareAddr": f"02:00:5e:00:{n // 256:02x}:{n % 256:02x}",
            }
            for n in range(neighbors)
        ],
    }


def class_config() -> dict[str, Any]:
    """Defaults a DeviceClass sets for every claim of the class."""
    return {
        "interface": {"mtu": 9000, "gsoMaxSize": 65536, "arpIgnore": 1},
        "routes": [{"destination": "10.0.0.0/8", "gateway": "192.168.1.1"}],
        "ethtool": {"features": {"rx-gro-hw": True}},
    }


def claim_config() -> dict[str, Any]:
    """What a claim refines on top of its class."""
    return {
        "interface": {"name": "net1", "addresses": ["192.168.1.7/24"], "mtu": 8900},
        "routes": [
            {"destination": "10.0.0.0/8", "gateway": "192.168.1.1"},
            {"destination": "172.16.0.0/12", "gateway": "192.168.1.254"},
        ],
        "ethtool": {"features": {"tx-checksum-ip-generic": False}},
    }


# --- devices and slices --------------------------------------------------------


def pci_devices(n: int) -> list[agent_pb2.Device]:
    """`n` PCI NICs as the agent reports them (several ports per card, two NUMA nodes)."""
    out = []
    for i in range(n):
        bus, fn = 0x10 + i // 8, i % 8
        bdf = f"0000:{bus:02x}:00.{fn}"
        numa = 0 if i < n / 2 else 1
        out.append(
            agent_pb2.Device(
                name=f"pci-0000-{bus:02x}-00-{fn}",
                ifname=f"ens{bus}f{fn}np{fn}",
                ifindex=10 + i,
                mac=f"0c:42:a1:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
                permanent_mac=f"0c:42:a1:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
                mtu=9000,
                type="device",
                state="up" if i % 3 else "down",
                alias=f"rail {i % 8}",
                encapsulation="ether",
                ipv4=[f"10.{i // 250}.{i % 250}.2/24"] if i % 2 else [],
                ipv6=[f"fd00:{i:x}::2/64"] if i % 4 == 1 else [],
                pci_address=bdf,
                pci_vendor="Mellanox Technologies",
                pci_device="MT2910 Family [ConnectX-7]",
                pci_subsystem="Mellanox Technologies Device 0070",
                numa_node=numa,
                pcie_root=f"pci0000:{0x40 * numa + bus % 4:02x}",
                sriov=fn == 0,
                sriov_vfs=8 if fn == 0 else 0,
                virtual=False,
                rdma=True,
                rdma_device=f"mlx5_{i}",
            )
        )
    return out


def slice_count(devices: int, per_slice: int = 128) -> int:
    return max(1, math.ceil(devices / per_slice))


def as_listed(created: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Slices as the API server lists them after creating `created` (names, uids assigned)."""
    out = []
    for n, body in enumerate(created):
        meta = dict(body["metadata"])
        name = meta.pop("generateName") + f"x{n:04d}"
        meta.update(name=name, uid=f"uid-{n}", resourceVersion=str(1000 + n))
        out.append({"metadata": meta, "spec": body["spec"]})
    return out


# --- NRI ---------------------------------------------------------------------------


def pod_sandbox(i: int = 0, *, heavy: bool = False) -> api_pb2.PodSandbox:
    """A pod as containerd's NRI reports it; `heavy` adds what big manifests carry."""
    uid = f"6b1f3a2c-0000-4000-8000-{i:012d}"
    labels = {"app": "trainer", "pod-template-hash": "7d9f8c6b5", "job-index": str(i)}
    annotations = {
        "kubernetes.io/config.source": "api",
        "kubernetes.io/config.seen": "2026-11-22T16:39:14.123456789Z",
    }
    if heavy:
        labels |= {f"team.example.com/label-{k}": f"value-{k}" for k in range(12)}
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = (
            '{"apiVersion":"v1","kind":"Pod","spec":{"containers":[' + ",".join(
                f'{{"name":"c{k}","image":"registry.example.com/ml/trainer:v{k}"}}'
                for k in range(40)
            ) + "]}}"
        )  # fmt: skip
    sandbox = f"{i:064x}"
    return api_pb2.PodSandbox(
        id=sandbox,
        name=f"trainer-{i}",
        uid=uid,
        namespace="ml-team",
        labels=labels,
        annotations=annotations,
        runtime_handler="runc",
        linux=api_pb2.LinuxPodSandbox(
            cgroup_parent=f"/kubepods/burstable/pod{uid}",
            cgroups_path=f"kubepods-burstable-pod{uid.replace('-', '_')}.slice"
            f":cri-containerd:{sandbox}",
            namespaces=[
                api_pb2.LinuxNamespace(type="network", path=f"/var/run/netns/cni-{uid}"),
                api_pb2.LinuxNamespace(type="ipc"),
                api_pb2.LinuxNamespace(type="uts"),
            ],
        ),
        pid=4000 + i,
        ips=[f"10.244.1.{i % 250 + 2}"],
    )


# --- store records -----------------------------------------------------------------


def claim_record(i: int, pod_uid: str) -> ClaimRecord:
    """A prepared claim as the kubelet-plugin writes it: one NIC with a full config."""
    return ClaimRecord(
        uid=f"claim-{i:06d}",
        namespace="ml-team",
        name=f"trainer-{i}-nic",
        pod_uids=(pod_uid,),
        devices=(
            PreparedDevice(
                request="nic",
                pool=NODE,
                device=f"pci-0000-{i % 200:02x}-00-0",
                config=full_config(i),
            ),
        ),
        trace_context={"traceparent": f"00-{i:032x}-{i:016x}-01"},
    )


def attachment_record(i: int, phase: AttachmentPhase) -> AttachmentRecord:
    """An attachment row as the agent writes it during attach (original state recorded)."""
    return AttachmentRecord(
        claim_uid=f"claim-{i:06d}",
        device=f"pci-0000-{i % 200:02x}-00-0",
        pod_uid=f"pod-{i:06d}",
        pod_namespace="ml-team",
        pod_name=f"trainer-{i}",
        netns_path=f"/var/run/netns/cni-pod-{i:06d}",
        phase=phase,
        host_ifname=f"ens{i % 200}f0np0",
        pod_ifname="net1",
        original={
            "ifname": f"ens{i % 200}f0np0",
            "ifindex": 10 + i,
            "mtu": 1500,
            "mac": "0c:42:a1:00:00:01",
            "permanent_mac": "0c:42:a1:00:00:01",
            "pci_address": f"0000:{i % 200:02x}:00.0",
            "alias": "",
            "up": True,
            "addresses": [{"address": "10.1.0.2", "prefixlen": 24}],
            "routes": [{"dst": "10.2.0.0/16", "gateway": "10.1.0.1", "table": 254}],
        },
        result={"request": "nic", "pool": NODE, "name": "net1", "mtu": 9000,
                "ips": ["192.168.1.2/24"]},
    )  # fmt: skip
