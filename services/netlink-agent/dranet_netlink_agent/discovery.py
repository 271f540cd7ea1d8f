"""Netlink side of the inventory: consistent dumps and a change-event socket.

`discover()` dumps links, addresses and main-table routes of one namespace
over a socket made there by `netns.netlink_socket` (a thread, never a fork).
pyroute2 does not act on NLM_F_DUMP_INTR (the kernel's "this dump raced with
a change" flag), so every dump is checked and retried; one that keeps racing
is reported as incomplete. `EventSocket` listens to link, address and
route multicast groups; the inventory only needs to know *that* something
relevant changed, so datagrams are inspected with `struct`, not decoded.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute

from dranet_netlink_agent.netns import Target, netlink_socket
from dranet_netlink_agent.uplinks import MAIN_TABLE, RouteRecord

log = logging.getLogger(__name__)

NLM_F_DUMP_INTR = 0x10
IFF_LOOPBACK = 0x8
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE
GROUPS |= RTMGRP_IPV6_ROUTE
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = (
    16, 17, 20, 21, 24, 25,
)  # fmt: skip
DUMP_ATTEMPTS = 5
# iproute2's names for the ARPHRD_* link types that matter here.
ENCAPSULATION = {
    1: "ether", 32: "infiniband", 512: "ppp", 768: "ipip", 769: "tunnel6",
    772: "loopback", 776: "sit", 778: "gre", 823: "ip6gre", 65534: "none",
}  # fmt: skip
_NLMSGHDR = struct.Struct("=IHHII")


@dataclass(frozen=True)
class LinkRecord:
    """One link as netlink reports it."""

    ifindex: int
    ifname: str
    mac: str
    permanent_mac: str
    mtu: int
    kind: str  # IFLA_INFO_KIND, "device" when absent (hardware)
    state: str
    alias: str
    encapsulation: str
    loopback: bool
    master: int  # 0 when not enslaved
    parent_bus: str  # IFLA_PARENT_DEV_BUS_NAME, e.g. "pci"
    parent_dev: str  # IFLA_PARENT_DEV_NAME, e.g. "0000:8a:00.0"
    # IFLA_LINK: the lower device (a VLAN's or macvlan's parent, a veth's peer)
    # in this namespace; 0 when none or when it lives in another namespace.
    lower: int = 0


@dataclass(frozen=True)
class Discovery:
    """One consistent view of a namespace."""

    links: tuple[LinkRecord, ...]
    addresses: dict[int, tuple[tuple[str, ...], tuple[str, ...]]]  # ifindex -> (v4, v6)
    routes: tuple[RouteRecord, ...]
    complete: bool = True  # False: a dump kept racing with changes (may miss entries)


def _mac(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return ":".join(f"{b:02x}" for b in value)
    return str(value or "").lower()


def lower_ifindex(msg: Any) -> int:
    """IFLA_LINK of an ifinfmsg when it names a link of the same namespace, else 0.

    With IFLA_LINK_NETNSID present the index belongs to another namespace (a
    veth's peer in the fabric, a macvlan moved away from its parent): an
    unrelated link here may have that number.
    """
    if msg.get("link_netnsid") is not None:
        return 0
    lower = int(msg.get("link") or 0)
    return 0 if lower == int(msg["index"]) else lower


def link_record(msg: Any) -> LinkRecord:
    """A LinkRecord from a pyroute2 ifinfmsg."""
    link_type = int(msg["ifi_type"])
    return LinkRecord(
        ifindex=int(msg["index"]),
        ifname=str(msg.get("ifname") or ""),
        mac=_mac(msg.get("address")),
        permanent_mac=_mac(msg.get("perm_address")),
        mtu=int(msg.get("mtu") or 0),
        kind=str(msg.get(("linkinfo", "kind")) or "device"),
        state=str(msg.get("operstate") or "unknown").lower(),
        alias=str(msg.get("ifalias") or ""),
        encapsulation=ENCAPSULATION.get(link_type, str(link_type)),
        loopback=bool(int(msg["flags"]) & IFF_LOOPBACK) or link_type == 772,
        master=int(msg.get("master") or 0),
        parent_bus=str(msg.get("parent_dev_bus_name") or ""),
        parent_dev=str(msg.get("parent_dev_name") or ""),
        lower=lower_ifindex(msg),
    )


def global_address(msg: Any) -> tuple[int, int, str] | None:
    """(ifindex, family, CIDR) of a global unicast address, None for any other."""
    # IFA_LOCAL is this host's side; IFA_ADDRESS is the peer on point-to-point links.
    value = msg.get("local") or msg.get("address")
    if not value:
        return None
    iface = ipaddress.ip_interface(f"{value}/{int(msg['prefixlen'])}")
    addr = iface.ip
    if addr.is_link_local or addr.is_loopback or addr.is_multicast or addr.is_unspecified:
        return None
    return int(msg["index"]), int(msg["family"]), str(iface)


def route_record(msg: Any) -> RouteRecord:
    oif = int(msg.get("oif") or 0)
    hops = tuple(int(h.get("oif", 0) or 0) for h in (msg.get("multipath") or ()))
    oifs = tuple(i for i in (oif, *hops) if i)
    return RouteRecord(
        family=int(msg["family"]),
        table=int(msg.get("table") or msg["table"]),
        dst_len=int(msg["dst_len"]),
        metric=int(msg.get("priority") or 0),
        oifs=oifs,
    )


async def consistent_dump(
    fetch: Callable[[], Awaitable[AsyncIterator[Any]]], what: str, attempts: int = DUMP_ATTEMPTS
) -> tuple[list[Any], bool]:
    """Runs a dump until no message carries NLM_F_DUMP_INTR.

    Returns the messages and whether they are consistent. On a namespace
    that keeps changing (a dump of a few hundred links takes ~0.1 s in
    Python) every attempt may race; the last result is then returned as
    incomplete and the caller decides how far to trust it.
    """
    msgs: list[Any] = []
    for _ in range(attempts):
        msgs = [msg async for msg in await fetch()]
        if not any(int(m["header"]["flags"]) & NLM_F_DUMP_INTR for m in msgs):
            return msgs, True
        log.debug("%s dump interrupted by a concurrent change; retrying", what)
    return msgs, False


async def discover(target: Target) -> Discovery:
    """Links, global addresses and main-table routes of `target` (None: our own netns)."""
    sock = await asyncio.to_thread(netlink_socket, target)  # may enter a netns: a thread
    async with AsyncIPRoute(use_socket=sock) as ipr:
        links, links_ok = await consistent_dump(lambda: ipr.link("dump"), "link")
        addrs, addrs_ok = await consistent_dump(lambda: ipr.addr("dump"), "address")
        routes, routes_ok = await consistent_dump(
            lambda: ipr.route("dump", table=MAIN_TABLE), "route"
        )
    v4: dict[int, list[str]] = {}
    v6: dict[int, list[str]] = {}
    for msg in addrs:
        found = global_address(msg)
        if found:
            ifindex, family, cidr = found
            (v4 if family == socket.AF_INET else v6).setdefault(ifindex, []).append(cidr)
    addresses = {
        i: (tuple(sorted(v4.get(i, ()))), tuple(sorted(v6.get(i, ())))) for i in {*v4, *v6}
    }
    return Discovery(
        links=tuple(link_record(m) for m in links),
        addresses=addresses,
        routes=tuple(r for r in map(route_record, routes) if r.table == MAIN_TABLE),
        complete=links_ok and addrs_ok and routes_ok,
    )


def is_relevant(datagram: bytes) -> bool:
    """True if a multicast datagram reports a link, an address or a main-table default route."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(datagram):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(datagram, offset)
        if length < _NLMSGHDR.size:
            break
        if kind in (RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR):
            return True
        body = offset + _NLMSGHDR.size
        # struct rtmsg: family, dst_len, src_len, tos, table, ... (bytes)
        if kind in (RTM_NEWROUTE, RTM_DELROUTE) and body + 5 <= len(datagram):
            dst_len, table = datagram[body + 1], datagram[body + 4]
            if dst_len == 0 and table == MAIN_TABLE:
                return True
        offset += (length + 3) & ~3
    return False


class EventSocket:
    """A non-blocking netlink socket in `target` joined to the change groups."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._sock: socket.socket | None = None

    def open(self) -> None:
        self.close()
        sock = netlink_socket(self._target)
        sock.bind((0, GROUPS))
        sock.setblocking(False)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def changed(self) -> bool:
        """Waits for the next datagram; True if it matters.

        Raises OSError(ENOBUFS) after an overflow: the caller reopens and
        rescans, since the lost events cannot be recovered.
        """
        if self._sock is None:
            self.open()
        assert self._sock is not None
        data = await asyncio.get_running_loop().sock_recv(self._sock, 1 << 16)
        return is_relevant(data)


def is_overflow(exc: OSError) -> bool:
    return exc.errno == errno.ENOBUFS
