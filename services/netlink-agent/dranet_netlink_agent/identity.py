"""Is the interface under a device's name still that device? Checked before a move.

Devices are found on the node by name, and a name can be taken by another
interface since the inventory last looked. `identity_mismatch` compares the
link with the inventory's identity (ifindex, permanent MAC, and for a PCI
NIC its parent device against the PCI address); `parent_device` reads that
parent (IFLA_PARENT_DEV_NAME). attach.py's `_find_on_node` uses both: it
rescans once on a mismatch, then refuses the move.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dranet_netlink_agent.context import NetDeviceLike


def identity_mismatch(link: dict[str, Any], dev: NetDeviceLike, parent: str = "") -> str:
    """Why the link found under the device's name is not the device ("" when it is).

    `parent` is the link's parent device (its PCI address for a PCI NIC),
    "" when the kernel does not say.
    """
    if dev.ifindex and link["ifindex"] != dev.ifindex:
        return f"ifindex {link['ifindex']}, the device has {dev.ifindex}"
    perm = dev.permanent_mac.lower()
    if perm and str(link.get("permanent_mac") or "").lower() != perm:
        return f"permanent MAC {link.get('permanent_mac') or 'none'}, the device has {perm}"
    if dev.pci_address and parent and parent != dev.pci_address:
        return f"PCI address {parent}, the device has {dev.pci_address}"
    return ""


async def parent_device(node: AsyncIPRoute, index: int) -> str:
    """IFLA_PARENT_DEV_NAME of a link (a PCI NIC's PCI address); "" if none."""
    try:
        found = await node.link("get", index=index)
    except NetlinkError:  # gone meanwhile: the move step reports it
        return ""
    return str(found[0].get("IFLA_PARENT_DEV_NAME") or "") if found else ""
