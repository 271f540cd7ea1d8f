"""Link-level netlink operations the attach and restore paths share.

pyroute2's `ifinfmsg` stops at IFLA_ALLMULTI (61), so it can neither send nor
read IFLA_GSO_IPV4_MAX_SIZE (63) / IFLA_GRO_IPV4_MAX_SIZE (64). `_LinkMsg`
extends its attribute table; link dumps still decode through pyroute2's own
class, so those two values are read from the raw 'UNKNOWN' attributes.

Every helper is idempotent: an address or route that already exists counts
as added, one that is already gone counts as deleted.

`kernel_dump` asks the kernel to filter a dump (NETLINK_GET_STRICT_CHK): a
node can hold tens of thousands of routes, and parsing them all in Python on
the event loop to keep one interface's would blow the attach budget.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Awaitable
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

IFLA_GSO_IPV4_MAX_SIZE = 63
IFLA_GRO_IPV4_MAX_SIZE = 64
IFF_UP = 0x1
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12
SIOCGSKNS = 0x894C  # an fd of the network namespace a socket lives in


class _LinkMsg(ifinfmsg):  # type: ignore[misc]
    # pyroute2 caches a compiled table per class; a subclass must compile its own.
    _nlmsg_base__compiled_nla = False
    nla_map = (
        *((i, name, kind) for i, (name, kind) in enumerate(ifinfmsg.nla_map)),
        (62, "IFLA_DEVLINK_PORT", "hex"),
        (IFLA_GSO_IPV4_MAX_SIZE, "IFLA_GSO_IPV4_MAX_SIZE", "uint32"),
        (IFLA_GRO_IPV4_MAX_SIZE, "IFLA_GRO_IPV4_MAX_SIZE", "uint32"),
    )


# Keyword -> netlink attribute for `set_link`.
LINK_ATTRS = {
    "ifname": "IFLA_IFNAME",
    "mtu": "IFLA_MTU",
    "mac": "IFLA_ADDRESS",
    "alias": "IFLA_IFALIAS",
    "gso_max_size": "IFLA_GSO_MAX_SIZE",
    "gro_max_size": "IFLA_GRO_MAX_SIZE",
    "gso_ipv4_max_size": "IFLA_GSO_IPV4_MAX_SIZE",
    "gro_ipv4_max_size": "IFLA_GRO_IPV4_MAX_SIZE",
    "netns_fd": "IFLA_NET_NS_FD",
}


def is_errno(exc: BaseException, *codes: int) -> bool:
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, OSError):
        code = exc.errno
    return code in codes


async def tolerate(op: Awaitable[Any], *codes: int) -> bool:
    """Awaits a netlink op; False (not an error) when it fails with one of `codes`."""
    try:
        await op
    except NetlinkError as exc:
        if exc.code in codes:
            return False
        raise
    return True


async def set_link(ipr: AsyncIPRoute, index: int, **values: Any) -> None:
    """ONE RTM_NEWLINK on `index` carrying every given attribute (None values skipped).

    Rename, MTU, MAC, GSO/GRO sizes and the namespace move (netns_fd) travel
    together, so the device never shows up in the target under a clashing name.
    """
    msg = _LinkMsg()
    msg["index"] = index
    msg["attrs"] = [(LINK_ATTRS[key], value) for key, value in values.items() if value is not None]
    async for _ in await ipr.nlm_request(msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK):
        pass


async def set_state(ipr: AsyncIPRoute, index: int, up: bool) -> None:
    await ipr.link("set", index=index, state="up" if up else "down")


def _raw_u32(link: Any, nla_type: int) -> int | None:
    for name, nla in link["attrs"]:
        if name != "UNKNOWN":
            continue
        length, kind = struct.unpack_from("HH", nla.data, nla.offset)
        if kind & 0x3FFF == nla_type and length >= 8:
            return int(struct.unpack_from("I", nla.data, nla.offset + 4)[0])
    return None


def describe_link(link: Any) -> dict[str, Any]:
    """The link fields the agent records and restores, from an RTM_NEWLINK message."""
    perm = link.get("IFLA_PERM_ADDRESS")
    if isinstance(perm, str) and perm and ":" not in perm:
        perm = ":".join(perm[i : i + 2] for i in range(0, len(perm), 2))
    return {
        "ifname": link.get("IFLA_IFNAME"),
        "ifindex": int(link["index"]),
        "mtu": link.get("IFLA_MTU"),
        "mac": link.get("IFLA_ADDRESS") or "",
        "permanent_mac": perm or "",
        "alias": link.get("IFLA_IFALIAS") or "",
        "up": bool(link["flags"] & IFF_UP),
        "master": link.get("IFLA_MASTER") or 0,
        "kind": (link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) or ""),
        "gso_max_size": link.get("IFLA_GSO_MAX_SIZE"),
        "gro_max_size": link.get("IFLA_GRO_MAX_SIZE"),
        "gso_ipv4_max_size": _raw_u32(link, IFLA_GSO_IPV4_MAX_SIZE),
        "gro_ipv4_max_size": _raw_u32(link, IFLA_GRO_IPV4_MAX_SIZE),
    }


async def links(ipr: AsyncIPRoute) -> list[dict[str, Any]]:
    return [describe_link(link) async for link in await ipr.link("dump")]


async def get_link(
    ipr: AsyncIPRoute, *, index: int | None = None, ifname: str | None = None
) -> dict[str, Any] | None:
    """One link by index or name, or None when the namespace has no such link."""
    try:
        if index is not None:
            found = await ipr.link("get", index=index)
        else:
            found = await ipr.link("get", ifname=ifname)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
            return None
        raise
    return describe_link(found[0]) if found else None


def own_netns_fd() -> int:
    """An fd of the agent's own network namespace (the main thread's: never setns'd)."""
    return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


async def kernel_dump(ipr: AsyncIPRoute, msg: Any, msg_type: int) -> list[Any]:
    """The messages of a dump request, filtered by the kernel.

    With NETLINK_GET_STRICT_CHK the kernel honours the request's filters
    (RTA_OIF and rtm_table for routes, ifa_index for addresses, NDA_IFINDEX
    for neighbours) and sends only what matches. The option is set for this
    request only, so the caller's socket is handed back as it was. A kernel
    older than 4.20 lacks it and sends everything: callers still filter.
    """
    try:
        ipr.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        strict = True
    except OSError:
        strict = False
    try:
        return [m async for m in await ipr.nlm_request(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP)]
    finally:
        if strict:
            ipr.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 0)


def netns_fd_of(ipr: AsyncIPRoute) -> int:
    """A fresh fd of the network namespace `ipr`'s socket lives in (the caller closes it).

    ethtool and sysctls act on the calling thread's namespace, so work on a
    link found through `ipr` must run there.
    """
    return int(fcntl.ioctl(ipr.fileno(), SIOCGSKNS))
