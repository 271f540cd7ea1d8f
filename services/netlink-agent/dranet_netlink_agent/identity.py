"""Is the interface under a device's name still that device? Checked before a move.

Devices are found on the node by name, and a name can be taken by another
interface since the inventory last looked. `find_on_node` compares the link
with the inventory's identity (ifindex, permanent MAC, and for a PCI NIC its
parent device, IFLA_PARENT_DEV_NAME, against the PCI address), rescans once
on a mismatch and then refuses; `identity_mismatch` is the pure comparison.
"""

from __future__ import annotations

from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dranet.errors import NetworkStepError, RefusedError
from dranet_netlink_agent.context import AgentContext, NetDeviceLike
from dranet_netlink_agent.linkops import get_link
from dranet_netlink_agent.plan import Plan


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


async def find_on_node(
    ctx: AgentContext, node: AsyncIPRoute, plan: Plan
) -> tuple[NetDeviceLike, dict[str, Any]]:
    """The planned device's node link, checked against the inventory's identity.

    The device is found by its name, and a name can be taken by another
    interface since the inventory last looked: rescan once, then refuse.
    """
    dev, name = plan.device, plan.prepared.device
    for attempt in range(2):
        link = await get_link(node, ifname=dev.ifname)
        if link is None:
            raise NetworkStepError("find link on node", name, f"no interface {dev.ifname}")
        parent = await parent_device(node, link["ifindex"]) if dev.pci_address else ""
        why = identity_mismatch(link, dev, parent)
        if not why:
            return dev, link
        if attempt == 0:
            await ctx.resolver.rescan()
            dev = ctx.resolver.find(name) or dev
    raise RefusedError(
        f"device {name}: the interface named {dev.ifname} on the node is not that device "
        f"({why}); refusing to move it",
        hint="another interface took the device's name; check the node's interfaces and "
        "ListDevices",
    )
