"""Everything the inventory reads from sysfs, through one root path.

Tests point `root` at a fixture tree shaped like /sys (devices/, class/net,
bus/pci/devices) to cover PCI, SR-IOV, NUMA and RDMA cases this machine
lacks. All reads are blocking: callers run them off the event loop.

`/sys/class/net` shows the namespace of whoever mounted sysfs, not the
inventory's: `netdev()` therefore checks that the entry really is the
link netlink reported (same ifindex and MAC) before trusting it, and the
caller falls back to the netlink parent device (`pci()` by address, which
is not namespace-tagged).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BDF = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")
PCIE_ROOT = re.compile(r"pci[0-9a-fA-F]{4}:[0-9a-fA-F]{2}")
DEFAULT_PCI_IDS: tuple[Path, ...] = (
    Path("/usr/share/misc/pci.ids"),
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/pci.ids"),
)


@dataclass(frozen=True)
class PciInfo:
    """One PCI function, as sysfs describes it."""

    address: str
    vendor: str  # name from pci.ids when known, else the 4-digit id
    device: str  # likewise
    subsystem: str  # subsystem device id (as dranet/ghw publish it)
    numa_node: int | None
    pcie_root: str  # e.g. "pci0000:80"
    sriov: bool  # a PF that can have VFs (sriov_totalvfs > 0)
    sriov_vfs: int  # VFs currently enabled (sriov_numvfs)
    is_sriov_vf: bool  # has a physfn link
    rdma_device: str  # e.g. "mlx5_0", first entry of <dev>/infiniband


@dataclass(frozen=True)
class NetdevInfo:
    """What sysfs says about one netdev: its PCI function, if any."""

    pci: PciInfo | None
    virtual: bool  # lives under devices/virtual (veth, bridge, bond...)
    rdma_device: str


def pci_address_in(path: str) -> str:
    """The last PCI address component of a sysfs path ('' if none)."""
    for part in reversed(path.split("/")):
        if BDF.fullmatch(part):
            return part.lower()
    return ""


def pcie_root_in(path: str) -> str:
    """The host bridge component (`pci0000:80`) of a sysfs device path."""
    for part in path.split("/"):
        if PCIE_ROOT.fullmatch(part):
            return part.lower()
    return ""


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _int(path: Path, default: int = 0) -> int:
    text = _read(path)
    try:
        return int(text, 0) if text else default
    except ValueError:
        return default


def _hex_id(path: Path) -> str:
    """`0x15b3\\n` -> `15b3`."""
    text = _read(path).lower()
    return text[2:] if text.startswith("0x") else text


def _first_entry(directory: Path) -> str:
    try:
        return min(os.listdir(directory))
    except (OSError, ValueError):
        return ""


@dataclass(frozen=True)
class PciIds:
    vendors: dict[str, str]
    devices: dict[tuple[str, str], str]


@functools.lru_cache(maxsize=4)
def load_pci_ids(path: Path) -> PciIds:
    """Vendor and device names of a pci.ids file (subsystems and classes skipped)."""
    vendors: dict[str, str] = {}
    devices: dict[tuple[str, str], str] = {}
    vendor = ""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("C "):
                break  # the device-class section follows the vendors
            if not line.startswith("\t"):
                ident, _, name = line.partition(" ")
                vendor = ident.lower()
                vendors[vendor] = name.strip()
            elif not line.startswith("\t\t") and vendor:
                ident, _, name = line.strip().partition(" ")
                devices[(vendor, ident.lower())] = name.strip()
    return PciIds(vendors, devices)


class Sysfs:
    """Reads under `root` (normally /sys); names from the first pci.ids found."""

    def __init__(self, root: Path = Path("/sys"), pci_ids: Sequence[Path] = DEFAULT_PCI_IDS):
        self.root = Path(root)
        self._pci_ids = tuple(pci_ids)

    def _names(self) -> PciIds | None:
        for candidate in self._pci_ids:
            if candidate.is_file():
                try:
                    return load_pci_ids(candidate)
                except OSError as exc:
                    log.warning("cannot read %s: %s", candidate, exc)
        return None

    def netdev(self, ifname: str, *, ifindex: int = 0, mac: str = "") -> NetdevInfo | None:
        """sysfs facts of `class/net/<ifname>`, or None when absent or another link.

        With `ifindex`/`mac` given, an entry whose ifindex or address differs
        belongs to another namespace's link of the same name and is ignored.
        """
        entry = self.root / "class" / "net" / ifname
        if not entry.exists():
            return None
        if ifindex and _int(entry / "ifindex", ifindex) != ifindex:
            return None
        seen_mac = _read(entry / "address").lower()
        if mac and seen_mac and seen_mac != mac.lower():
            return None
        real = os.path.realpath(entry)
        virtual = real.startswith(os.path.realpath(self.root / "devices" / "virtual") + "/")
        bdf = "" if virtual else pci_address_in(real)
        pci = self.pci(bdf) if bdf else None
        rdma = _first_entry(entry / "device" / "infiniband") if not virtual else ""
        return NetdevInfo(
            pci=pci, virtual=virtual, rdma_device=rdma or (pci.rdma_device if pci else "")
        )

    def parent(self, bus: str, name: str) -> PciInfo | None:
        """The PCI function behind a netlink parent device (`bus/<bus>/devices/<name>`).

        For a virtio NIC the parent is `virtio2` on bus `virtio`, itself on PCI.
        """
        if not bus or not name or "/" in bus + name or name.startswith("."):
            return None
        dev = self.root / "bus" / bus / "devices" / name
        if not dev.exists():
            return None
        bdf = pci_address_in(os.path.realpath(dev))
        return self.pci(bdf) if bdf else None

    def pci(self, address: str) -> PciInfo | None:
        """sysfs facts of one PCI function (bus/pci/devices/<address>), None if absent."""
        if not BDF.fullmatch(address):
            return None  # not a PCI address (e.g. a stored record): no path to build
        dev = self.root / "bus" / "pci" / "devices" / address
        if not dev.exists():
            return None
        vendor_id, device_id = _hex_id(dev / "vendor"), _hex_id(dev / "device")
        names = self._names()
        vendor = names.vendors.get(vendor_id, "") if names else ""
        product = names.devices.get((vendor_id, device_id), "") if names else ""
        numa = _int(dev / "numa_node", -1)
        total_vfs = _int(dev / "sriov_totalvfs")
        return PciInfo(
            address=address.lower(),
            vendor=vendor or vendor_id,
            device=product or device_id,
            subsystem=_hex_id(dev / "subsystem_device"),
            numa_node=numa if numa >= 0 else None,
            pcie_root=pcie_root_in(os.path.realpath(dev)),
            sriov=total_vfs > 0,
            sriov_vfs=_int(dev / "sriov_numvfs") if total_vfs > 0 else 0,
            is_sriov_vf=os.path.islink(dev / "physfn"),
            rdma_device=_first_entry(dev / "infiniband"),
        )
