"""Agent `Device` -> DRA device attributes (pure).

Names and meanings follow kubernetes-sigs/dranet (`dra.net/ifName`, ...)
under the driver's own domain, plus the standard topology attributes
`resource.kubernetes.io/numaNode` and `resource.kubernetes.io/pcieRoot` that
schedulers use to align NICs with GPUs. Values use the ResourceSlice JSON
shape: `{"string": ...}`, `{"int": ...}` or `{"bool": ...}`.

The API server rejects a whole slice if one string value is longer than 64
bytes, so strings are kept within that: address lists are cut after the last
whole address that fits, other strings at a character boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dranet.agent.v1 import agent_pb2

MAX_VALUE_BYTES = 64  # DeviceAttributeMaxValueLength
STANDARD_DOMAIN = "resource.kubernetes.io"

Attribute = dict[str, Any]


def join_within(values: Iterable[str], limit: int = MAX_VALUE_BYTES) -> str:
    """Comma-joined values, keeping only whole values that fit in `limit` bytes."""
    out = ""
    for value in values:
        candidate = f"{out},{value}" if out else value
        if len(candidate.encode()) > limit:
            break
        out = candidate
    return out


def clip(value: str, limit: int = MAX_VALUE_BYTES) -> str:
    """`value` cut to at most `limit` UTF-8 bytes without splitting a character."""
    raw = value.encode()
    if len(raw) <= limit:
        return value
    return raw[:limit].decode(errors="ignore")


def device_attributes(device: agent_pb2.Device, domain: str) -> dict[str, Attribute]:
    """The published attributes of one device; `domain` is the driver name."""
    attrs: dict[str, Attribute] = {}

    def text(name: str, value: str, qualified: str = "") -> None:
        if value:
            attrs[qualified or f"{domain}/{name}"] = {"string": clip(value)}

    text("ifName", device.ifname)
    text("pciAddress", device.pci_address)
    text("mac", device.mac)
    if device.mtu > 0:
        attrs[f"{domain}/mtu"] = {"int": device.mtu}
    text("encapsulation", device.encapsulation)
    text("alias", device.alias)
    text("state", device.state)
    text("type", device.type)
    if device.ipv4:
        attrs[f"{domain}/ipv4"] = {"string": join_within(sorted(device.ipv4))}
    if device.ipv6:
        attrs[f"{domain}/ipv6"] = {"string": join_within(sorted(device.ipv6))}
    attrs[f"{domain}/sriov"] = {"bool": device.sriov}
    if device.sriov:
        attrs[f"{domain}/sriovVfs"] = {"int": device.sriov_vfs}
    if device.is_sriov_vf:
        attrs[f"{domain}/isSriovVf"] = {"bool": True}
    attrs[f"{domain}/virtual"] = {"bool": device.virtual}
    attrs[f"{domain}/rdma"] = {"bool": device.rdma}
    text("rdmaDevice", device.rdma_device)
    text("pciVendor", device.pci_vendor)
    text("pciDevice", device.pci_device)
    text("pciSubsystem", device.pci_subsystem)
    # -1 (or absent) means the platform reports no NUMA affinity.
    if device.HasField("numa_node") and device.numa_node >= 0:
        attrs[f"{domain}/numaNode"] = {"int": device.numa_node}
        attrs[f"{STANDARD_DOMAIN}/numaNode"] = {"int": device.numa_node}
    text("", device.pcie_root, qualified=f"{STANDARD_DOMAIN}/pcieRoot")
    return attrs
