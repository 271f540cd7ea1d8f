"""Shared fixtures for the agent's attach/detach/recovery/service tests.

`lab` is a NetLab (node, fabric, pod namespaces); `plugin_store` writes
claims as the kubelet-plugin would; `ctx` is an AgentContext bound to the
lab's node namespace with a small resolver (`LabResolver`) standing in for the
inventory: a veth's DRA device name is its interface name. Everything the
tests assert about the kernel comes from `ip -j` (see `snapshot`).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2_grpc
from dranet.grpcserver import UnixServer, unix_channel
from dranet.store import ClaimRecord, PreparedDevice, Role, Store
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.netns import run_in_netns
from dranet_netlink_agent.netnspaths import DEFAULT_ROOTS
from dranet_sandbox.netlab import NetLab, ip, ip_json

BOOT = "boot-test"
# Volatile fields of `ip -j -d` output that say nothing about configuration.
VOLATILE = {"ifindex", "operstate", "stats", "stats64", "link_index", "link", "link_netnsid",
            "carrier_changes", "carrier_up_count", "carrier_down_count", "qdisc",
            "valid_life_time", "preferred_life_time", "tentative", "linkmode"}  # fmt: skip


@dataclass(frozen=True)
class LabDevice:
    name: str
    ifname: str
    ifindex: int
    permanent_mac: str = ""
    pci_address: str = ""
    virtual: bool = True  # the lab's NICs are veths


@dataclass
class LabResolver:
    """The inventory seam over `ip -j link` of the node namespace."""

    netns: str
    uplinks: set[str] = field(default_factory=set)
    rescans: int = 0

    def _all(self) -> list[LabDevice]:
        return [
            LabDevice(link["ifname"], link["ifname"], int(link["ifindex"]),
                      link.get("permaddr", ""))
            for link in ip_json("link", "show", netns=self.netns)
            if link["ifname"] != "lo"
        ]  # fmt: skip

    def find(self, name: str) -> LabDevice | None:
        return next((d for d in self._all() if d.name == name), None)

    def find_by(
        self, *, permanent_mac: str = "", pci_address: str = "", ifname: str = ""
    ) -> LabDevice | None:
        for dev in self._all():
            if permanent_mac and dev.permanent_mac == permanent_mac:
                return dev
            if ifname and dev.ifname == ifname:
                return dev
        return None

    def is_uplink(self, ifname: str) -> bool:
        return ifname in self.uplinks

    async def rescan(self) -> None:
        self.rescans += 1


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab() as made:
        yield made


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def plugin_store(db_path: Path) -> Iterator[Store]:
    with Store(db_path, role=Role.PLUGIN, boot_id=BOOT) as store:
        yield store


@pytest.fixture
def agent_store(db_path: Path, plugin_store: Store) -> Iterator[Store]:
    with Store(db_path, role=Role.AGENT, boot_id=BOOT) as store:
        yield store


@pytest.fixture
def resolver(lab: NetLab) -> LabResolver:
    return LabResolver(lab.node)


@pytest.fixture
async def ctx(
    lab: NetLab, agent_store: Store, resolver: LabResolver
) -> AsyncIterator[AgentContext]:
    yield AgentContext(
        store=agent_store,
        resolver=resolver,
        node_netns=lab.path(lab.node),
        netns_roots=DEFAULT_ROOTS,
    )


ServeAgent = Callable[[agent_pb2_grpc.NetlinkAgentServicer], Awaitable[Any]]


@pytest.fixture
async def serve_agent(tmp_path: Path) -> AsyncIterator[ServeAgent]:
    """Serves a NetlinkAgent servicer on a real unix socket; returns a stub to it."""
    running: list[tuple[UnixServer, Any]] = []

    async def serve(service: agent_pb2_grpc.NetlinkAgentServicer) -> Any:
        server = UnixServer(
            tmp_path / "sock" / f"agent{len(running)}.sock",
            adders=[lambda s: agent_pb2_grpc.add_NetlinkAgentServicer_to_server(service, s)],
        )
        await server.start()
        channel = unix_channel(server.path)
        running.append((server, channel))
        return agent_pb2_grpc.NetlinkAgentStub(channel)

    yield serve
    for server, channel in reversed(running):
        await channel.close(None)
        await server.stop(0)


def claim(
    store: Store,
    pod_uid: str,
    *devices: tuple[str, dict[str, Any]],
    uid: str = "claim-1",
    name: str = "c1",
) -> ClaimRecord:
    """Writes a prepared claim (as the kubelet-plugin does) for `pod_uid`."""
    rec = ClaimRecord(
        uid=uid,
        namespace="default",
        name=name,
        pod_uids=(pod_uid,),
        devices=tuple(
            PreparedDevice(request=f"req{i}", pool="node-a", device=dev, config=cfg)
            for i, (dev, cfg) in enumerate(devices)
        ),
    )
    store.put_claim(rec)
    return rec


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def snapshot(netns: str, ifname: str) -> dict[str, Any]:
    """`ip -j -d link/addr/route` of one interface, volatile fields removed."""
    link = ip_json("-d", "link", "show", "dev", ifname, netns=netns)
    addrs = ip_json("addr", "show", "dev", ifname, netns=netns)
    routes = []
    for family in ("-4", "-6"):
        routes += ip_json(family, "route", "show", "table", "all", "dev", ifname, netns=netns)
    infos = [_clean(a) for a in addrs[0]["addr_info"]] if addrs else []
    flags = sorted(set(link[0]["flags"]) - {"LOWER_UP", "M-DOWN"}) if link else []
    return {
        "link": {**_clean(link[0]), "flags": flags} if link else None,
        "addr": infos,
        "route": sorted(json.dumps(_clean(r), sort_keys=True) for r in routes),
    }


def pod_links(netns: str) -> list[str]:
    return [link["ifname"] for link in ip_json("link", "show", netns=netns)]


def sysctl(netns: str, key: str) -> str:
    """A /proc/sys/net value as seen from inside `netns` (read by `cat`, not by us)."""
    done = ip("netns", "exec", netns, "cat", "/proc/sys/net/" + key)
    return done.stdout.strip()


def raw_link_attrs(netns_path: str, ifname: str) -> dict[int, bytes]:
    """IFLA attributes of one link from a hand-made RTM_GETLINK (no pyroute2).

    For values iproute2 6.1 cannot show (IFLA_GSO_IPV4_MAX_SIZE...).
    """
    name = ifname.encode() + b"\0"
    attr = struct.pack("HH", 4 + len(name), 3) + name  # IFLA_IFNAME
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("BxHiII", 0, 0, 0, 0, 0) + attr
    msg = struct.pack("IHHII", 16 + len(body), 18, 1, 1, 0) + body  # RTM_GETLINK, NLM_F_REQUEST

    def ask() -> bytes:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
            sock.sendto(msg, (0, 0))
            return sock.recv(65536)

    data = run_in_netns(netns_path, ask)
    length, kind = struct.unpack_from("IH", data, 0)
    assert kind == 16, f"expected RTM_NEWLINK, got {kind}"
    attrs: dict[int, bytes] = {}
    offset = 32
    while offset + 4 <= length:
        alen, atype = struct.unpack_from("HH", data, offset)
        attrs[atype & 0x3FFF] = data[offset + 4 : offset + alen]
        offset += (alen + 3) & ~3
    return attrs


def rules(netns: str) -> list[dict[str, Any]]:
    return ip_json("rule", "show", netns=netns) + ip_json("-6", "rule", "show", netns=netns)


def vrf_supported(lab: NetLab) -> bool:
    """Whether this kernel can make a VRF device (tried in the throwaway fabric netns)."""
    made = ip(
        "link", "add", "vrfprobe", "type", "vrf", "table", "4242", netns=lab.fabric, check=False
    )
    if made.returncode == 0:
        ip("link", "del", "vrfprobe", netns=lab.fabric)
    return made.returncode == 0


class Kit:
    """The helpers above, handed to tests as the `kit` fixture (tests/agent has no package)."""

    LabDevice = LabDevice
    LabResolver = LabResolver
    BOOT = BOOT
    claim = staticmethod(claim)
    snapshot = staticmethod(snapshot)
    pod_links = staticmethod(pod_links)
    sysctl = staticmethod(sysctl)
    raw_link_attrs = staticmethod(raw_link_attrs)
    rules = staticmethod(rules)
    vrf_supported = staticmethod(vrf_supported)
    ip_json = staticmethod(ip_json)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
