"""One network device as the agent offers it: `NetDevice` and how one is built.

`build_device` joins a netlink link with its addresses and its sysfs facts
(PCI, NUMA, SR-IOV, RDMA); `device_from_original` stands in for a device
attached to a pod before this process started, from its host-state record
and the sysfs entry of its PCI function.
`NetDevice.to_proto` (with `allocation_of` an attachment) is what the
inventory (`dranet_netlink_agent.inventory`) publishes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any, Protocol

from dranet.agent.v1 import agent_pb2
from dranet_netlink_agent.discovery import Discovery, LinkRecord
from dranet_netlink_agent.naming import device_name
from dranet_netlink_agent.sysfs import NetdevInfo, PciInfo, Sysfs

# Key of the host-state record (`hostread.capture`) holding how the inventory saw
# the link: descriptive only, never restored.
DESCRIBED = "described"


class AttachmentLike(Protocol):
    """The fields of `dranet.store.AttachmentRecord` the inventory reads."""

    @property
    def claim_uid(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def pod_uid(self) -> str: ...
    @property
    def pod_namespace(self) -> str: ...
    @property
    def pod_name(self) -> str: ...
    @property
    def pod_ifname(self) -> str: ...
    @property
    def original(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NetDevice:
    """One discovered device."""

    name: str
    ifname: str
    ifindex: int
    mac: str
    permanent_mac: str
    mtu: int
    kind: str
    state: str
    alias: str
    encapsulation: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    pci_address: str = ""
    pci_vendor: str = ""
    pci_device: str = ""
    pci_subsystem: str = ""
    numa_node: int | None = None
    pcie_root: str = ""
    sriov: bool = False
    sriov_vfs: int = 0
    is_sriov_vf: bool = False
    virtual: bool = False
    rdma: bool = False
    rdma_device: str = ""

    def to_proto(self, allocation: agent_pb2.Allocation | None = None) -> agent_pb2.Device:
        dev = agent_pb2.Device(
            name=self.name, ifname=self.ifname, ifindex=self.ifindex, mac=self.mac,
            permanent_mac=self.permanent_mac, mtu=self.mtu, type=self.kind, state=self.state,
            alias=self.alias, encapsulation=self.encapsulation, ipv4=self.ipv4, ipv6=self.ipv6,
            pci_address=self.pci_address, pci_vendor=self.pci_vendor,
            pci_device=self.pci_device, pci_subsystem=self.pci_subsystem,
            pcie_root=self.pcie_root, sriov=self.sriov, sriov_vfs=self.sriov_vfs,
            is_sriov_vf=self.is_sriov_vf, virtual=self.virtual, rdma=self.rdma,
            rdma_device=self.rdma_device,
        )  # fmt: skip
        if self.numa_node is not None:
            dev.numa_node = self.numa_node
        if allocation is not None:
            dev.allocation.CopyFrom(allocation)
        return dev


def is_virtual(link: LinkRecord, info: NetdevInfo | None) -> bool:
    """sysfs's word (under devices/virtual) when it has the link, else: no parent device."""
    return info.virtual if info is not None else not link.parent_dev


def described(link: LinkRecord, sysfs: Sysfs | None = None) -> dict[str, Any]:
    """What `build_device` takes from a link beyond the restorable fields (blocking with sysfs).

    Recorded at attach under `DESCRIBED` so `device_from_original` republishes
    the device as it was offered, not with empty state and link type.
    """
    info = sysfs.netdev(link.ifname, ifindex=link.ifindex, mac=link.mac) if sysfs else None
    return {
        "state": link.state,
        "encapsulation": link.encapsulation,
        "kind": link.kind,
        "alias": link.alias,
        "virtual": is_virtual(link, info),
    }


def build_device(link: LinkRecord, addresses: Discovery, sysfs: Sysfs) -> NetDevice:
    """Joins a link with its addresses and its sysfs facts (blocking reads)."""
    v4, v6 = addresses.addresses.get(link.ifindex, ((), ()))
    info = sysfs.netdev(link.ifname, ifindex=link.ifindex, mac=link.mac)
    pci: PciInfo | None
    virtual = is_virtual(link, info)
    if info is not None:
        pci, rdma = info.pci, info.rdma_device
    else:
        # class/net belongs to another namespace: trust the netlink parent device.
        pci = sysfs.parent(link.parent_bus, link.parent_dev)
        rdma = pci.rdma_device if pci else ""
    dev = NetDevice(
        name=device_name(link.ifname), ifname=link.ifname, ifindex=link.ifindex,
        mac=link.mac, permanent_mac=link.permanent_mac, mtu=link.mtu, kind=link.kind,
        state=link.state, alias=link.alias, encapsulation=link.encapsulation,
        ipv4=v4, ipv6=v6, virtual=virtual, rdma=bool(rdma), rdma_device=rdma,
    )  # fmt: skip
    if pci is None:
        return dev
    return replace(
        dev, name=device_name(link.ifname, pci.address), pci_address=pci.address,
        pci_vendor=pci.vendor, pci_device=pci.device, pci_subsystem=pci.subsystem,
        numa_node=pci.numa_node, pcie_root=pci.pcie_root, sriov=pci.sriov,
        sriov_vfs=pci.sriov_vfs, is_sriov_vf=pci.is_sriov_vf,
    )  # fmt: skip


def recorded_addresses(original: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Global (v4, v6) CIDRs of a host-state record's `addresses` [{address, prefixlen}]."""
    v4: list[str] = []
    v6: list[str] = []
    for entry in original.get("addresses") or ():
        try:
            iface = ipaddress.ip_interface(f"{entry['address']}/{int(entry['prefixlen'])}")
        except (KeyError, TypeError, ValueError):
            continue
        if iface.ip.is_link_local or iface.ip.is_loopback or iface.ip.is_multicast:
            continue
        (v4 if iface.version == 4 else v6).append(str(iface))
    return tuple(sorted(v4)), tuple(sorted(v6))


def device_from_original(
    name: str, original: dict[str, Any], sysfs: Sysfs | None = None
) -> NetDevice:
    """A stand-in for an attached device never seen by this process (agent restart).

    Reads only what `hoststate.capture` records. The PCI/NUMA/topology facts
    come from sysfs by the recorded PCI address (blocking reads, with `sysfs`):
    a PCI function's entry stays put while its netdev sits in a pod, so the
    device is republished with the attributes it had before the restart.
    Operstate, link type and `virtual` come from the `DESCRIBED` facts; a
    record written before those were kept leaves them empty (and not virtual).
    """
    seen = original.get(DESCRIBED)
    facts: dict[str, Any] = seen if isinstance(seen, dict) else {}

    def text(key: str, record: dict[str, Any] = original) -> str:
        return str(record.get(key) or "")

    v4, v6 = recorded_addresses(original)
    dev = NetDevice(
        name=name, ifname=text("ifname"), ifindex=int(original.get("ifindex") or 0),
        mac=text("mac"), permanent_mac=text("permanent_mac"),
        mtu=int(original.get("mtu") or 0),
        # as `link_record`: no IFLA_INFO_KIND is hardware
        kind=text("kind", facts) or text("kind") or "device",
        state=text("state", facts), alias=text("alias") or text("alias", facts),
        encapsulation=text("encapsulation", facts), ipv4=v4, ipv6=v6,
        pci_address=text("pci_address").lower(), virtual=facts.get("virtual") is True,
    )  # fmt: skip
    pci = sysfs.pci(dev.pci_address) if sysfs is not None and dev.pci_address else None
    if pci is None:
        return dev
    return replace(
        dev, pci_vendor=pci.vendor, pci_device=pci.device, pci_subsystem=pci.subsystem,
        numa_node=pci.numa_node, pcie_root=pci.pcie_root, sriov=pci.sriov,
        sriov_vfs=pci.sriov_vfs, is_sriov_vf=pci.is_sriov_vf, rdma=bool(pci.rdma_device),
        rdma_device=pci.rdma_device,
    )  # fmt: skip


def allocation_of(rec: AttachmentLike) -> agent_pb2.Allocation:
    return agent_pb2.Allocation(
        pod=agent_pb2.PodRef(uid=rec.pod_uid, namespace=rec.pod_namespace, name=rec.pod_name),
        claim_uid=rec.claim_uid,
        interface_name=rec.pod_ifname,
    )
