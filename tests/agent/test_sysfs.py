"""sysfs facts from fixture trees shaped like /sys (PCI, SR-IOV, NUMA, RDMA).

`FakeSys` builds the tree with real directories and relative symlinks, the
way the kernel lays them out, so the code under test walks realpaths exactly
as it does on a node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet_netlink_agent import inventory
from dranet_netlink_agent.device import device_from_original
from dranet_netlink_agent.discovery import Discovery, LinkRecord
from dranet_netlink_agent.inventory import Inventory, build_device
from dranet_netlink_agent.sysfs import Sysfs, load_pci_ids, pci_address_in, pcie_root_in
from dranet_sandbox.netlab import NetLab, ip_json

PCI_IDS = """\
# fixture pci.ids
15b3  Mellanox Technologies
\t101b  MT28908 Family [ConnectX-6]
\t\t15b3 0007  Mellanox ConnectX-6 VPI
\t101c  MT28908 Family [ConnectX-6 Virtual Function]
8086  Intel Corporation
\t1572  Ethernet Controller X710 for 10GbE SFP+
C 02  Network controller
\t00  Ethernet controller
"""


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


@dataclass
class FakeSys:
    """A throwaway /sys: call pci() and netdev() to populate it."""

    root: Path

    def pci(
        self,
        bdf: str,
        *,
        path: tuple[str, ...] = ("pci0000:80", "0000:80:01.0"),
        vendor: str = "0x15b3",
        device: str = "0x101b",
        subsystem: str = "0x0007",
        numa: int = 1,
        total_vfs: int | None = None,
        num_vfs: int = 0,
        physfn: str = "",
        rdma: str = "",
    ) -> Path:
        dev = self.root.joinpath("devices", *path, bdf)
        dev.mkdir(parents=True)
        files = {
            "vendor": vendor,
            "device": device,
            "subsystem_vendor": vendor,
            "subsystem_device": subsystem,
            "numa_node": str(numa),
            "class": "0x020000",
        }
        if total_vfs is not None:
            files |= {"sriov_totalvfs": str(total_vfs), "sriov_numvfs": str(num_vfs)}
        for name, value in files.items():
            (dev / name).write_text(value + "\n")
        if physfn:
            _symlink(dev / "physfn", self.root / "bus/pci/devices" / physfn)
        if rdma:
            (dev / "infiniband" / rdma).mkdir(parents=True)
        _symlink(self.root / "bus/pci/devices" / bdf, dev)
        return dev

    def netdev(self, ifname: str, parent: Path | None, *, ifindex: int, mac: str) -> Path:
        """A netdev under a PCI function, or under devices/virtual/net when parent is None."""
        base = parent if parent is not None else self.root / "devices/virtual"
        node = base / "net" / ifname
        node.mkdir(parents=True)
        (node / "ifindex").write_text(f"{ifindex}\n")
        (node / "address").write_text(mac + "\n")
        if parent is not None:
            _symlink(node / "device", parent)
        _symlink(self.root / "class/net" / ifname, node)
        return node


@pytest.fixture
def fake(tmp_path: Path) -> FakeSys:
    return FakeSys(tmp_path / "sys")


@pytest.fixture
def pci_ids(tmp_path: Path) -> Path:
    path = tmp_path / "pci.ids"
    path.write_text(PCI_IDS)
    return path


def test_sriov_pf_with_numa_root_rdma_and_names(fake: FakeSys, pci_ids: Path) -> None:
    pf = fake.pci("0000:81:00.0", total_vfs=8, num_vfs=2, rdma="mlx5_0")
    fake.netdev("ens1f0", pf, ifindex=4, mac="0c:42:a1:00:00:01")
    info = Sysfs(fake.root, pci_ids=[pci_ids]).netdev("ens1f0", ifindex=4, mac="0C:42:A1:00:00:01")
    assert info is not None and info.pci is not None
    assert not info.virtual
    assert info.rdma_device == "mlx5_0"
    pci = info.pci
    assert pci.address == "0000:81:00.0"
    assert (pci.vendor, pci.device) == ("Mellanox Technologies", "MT28908 Family [ConnectX-6]")
    assert pci.subsystem == "0007"
    assert pci.numa_node == 1
    assert pci.pcie_root == "pci0000:80"
    assert (pci.sriov, pci.sriov_vfs, pci.is_sriov_vf) == (True, 2, False)


def test_sriov_vf_has_physfn_and_no_numa(fake: FakeSys, pci_ids: Path) -> None:
    fake.pci("0000:81:00.0", total_vfs=8, num_vfs=1)
    vf = fake.pci("0000:81:00.2", device="0x101c", numa=-1, physfn="0000:81:00.0")
    fake.netdev("ens1f0v0", vf, ifindex=9, mac="aa:00:00:00:00:09")
    info = Sysfs(fake.root, pci_ids=[pci_ids]).netdev("ens1f0v0")
    assert info is not None and info.pci is not None
    assert info.pci.is_sriov_vf and not info.pci.sriov and info.pci.sriov_vfs == 0
    assert info.pci.numa_node is None
    assert info.pci.device.endswith("[ConnectX-6 Virtual Function]")


def test_nearest_bdf_behind_pcie_switches(fake: FakeSys) -> None:
    path = ("pci0000:8c", "0000:8c:00.0", "0000:8d:00.0", "0000:8e:02.0")
    nic = fake.pci("0000:91:00.0", path=path, vendor="0x8086", device="0x1572", total_vfs=0)
    fake.netdev("eth3", nic, ifindex=3, mac="aa:00:00:00:00:03")
    info = Sysfs(fake.root, pci_ids=[]).netdev("eth3")
    assert info is not None and info.pci is not None
    assert info.pci.address == "0000:91:00.0"
    assert info.pci.pcie_root == "pci0000:8c"
    # Without a pci.ids file the ids stand in for the names.
    assert (info.pci.vendor, info.pci.device) == ("8086", "1572")
    assert not info.pci.sriov and info.rdma_device == ""


def test_virtual_and_foreign_entries(fake: FakeSys) -> None:
    fake.netdev("veth7", None, ifindex=7, mac="aa:00:00:00:00:07")
    sysfs = Sysfs(fake.root, pci_ids=[])
    info = sysfs.netdev("veth7", ifindex=7)
    assert info is not None and info.virtual and info.pci is None
    # Same name, other namespace's link: different ifindex or MAC -> not ours.
    assert sysfs.netdev("veth7", ifindex=8) is None
    assert sysfs.netdev("veth7", mac="aa:00:00:00:00:99") is None
    assert sysfs.netdev("missing0") is None
    assert sysfs.pci("0000:00:00.0") is None


def test_path_parsing_and_pci_ids() -> None:
    path = "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0"
    assert pci_address_in(path) == "0000:00:03.0"
    assert pcie_root_in(path) == "pci0000:00"
    assert pci_address_in("/sys/devices/virtual/net/lo") == ""


def test_pci_ids_parser_stops_at_classes(pci_ids: Path) -> None:
    ids = load_pci_ids(pci_ids)
    assert ids.vendors == {"15b3": "Mellanox Technologies", "8086": "Intel Corporation"}
    assert ("15b3", "101b") in ids.devices and ("8086", "1572") in ids.devices
    assert "02" not in ids.vendors


def _link(ifname: str, ifindex: int, mac: str, bus: str = "", parent: str = "") -> LinkRecord:
    return LinkRecord(
        ifindex=ifindex, ifname=ifname, mac=mac, permanent_mac="", mtu=1500, kind="device",
        state="up", alias="", encapsulation="ether", loopback=False, master=0,
        parent_bus=bus, parent_dev=parent,
    )  # fmt: skip


def test_other_namespace_view_falls_back_to_the_netlink_parent(fake: FakeSys) -> None:
    """class/net shows another namespace's eth0: the netlink parent device is used instead."""
    nic = fake.pci("0000:00:03.0", path=("pci0000:00",), vendor="0x1af4", device="0x1041")
    virtio = nic / "virtio2"
    virtio.mkdir()
    _symlink(fake.root / "bus/virtio/devices/virtio2", virtio)
    fake.netdev("eth0", nic, ifindex=2, mac="aa:00:00:00:00:02")  # the other namespace's eth0
    sysfs = Sysfs(fake.root, pci_ids=[])
    found = Discovery(links=(), addresses={}, routes=())
    ours = build_device(_link("eth0", 5, "aa:00:00:00:00:05", "virtio", "virtio2"), found, sysfs)
    assert (ours.name, ours.pci_address, ours.pcie_root) == (
        "pci-0000-00-03-0",
        "0000:00:03.0",
        "pci0000:00",
    )
    assert not ours.virtual
    veth = build_device(_link("eth0", 6, "aa:00:00:00:00:06"), found, sysfs)
    assert (veth.name, veth.pci_address, veth.virtual) == ("eth0", "", True)
    assert sysfs.parent("virtio", "../virtio2") is None
    assert sysfs.parent("", "") is None


@pytest.mark.root
async def test_inventory_publishes_sysfs_attributes(fake: FakeSys) -> None:
    """Veths in a node netns stand in for a PF and a VF whose sysfs is a fixture."""
    with NetLab() as lab:
        lab.add_nic("pf0")
        lab.add_nic("vf0")
        lab.add_nic("plain0")
        links = {lk["ifname"]: lk for lk in ip_json("link", "show", netns=lab.node)}
        pf = fake.pci("0000:81:00.0", total_vfs=4, num_vfs=1, rdma="mlx5_0")
        vf = fake.pci("0000:81:00.2", numa=-1, physfn="0000:81:00.0")
        for name, parent in (("pf0", pf), ("vf0", vf)):
            lk = links[name]
            fake.netdev(name, parent, ifindex=lk["ifindex"], mac=lk["address"])
        inv = Inventory(netns=lab.path(lab.node), sysfs_root=fake.root)
        await inv.rescan()
        by_name = {d.name: d for d in inv.devices()}
        assert set(by_name) == {"pci-0000-81-00-0", "pci-0000-81-00-2", "plain0"}
        pf_dev = by_name["pci-0000-81-00-0"]
        assert pf_dev.ifname == "pf0" and pf_dev.mac == links["pf0"]["address"]
        assert (pf_dev.pci_address, pf_dev.pcie_root, pf_dev.numa_node) == (
            "0000:81:00.0",
            "pci0000:80",
            1,
        )
        assert pf_dev.sriov and pf_dev.sriov_vfs == 1 and not pf_dev.is_sriov_vf
        assert pf_dev.rdma and pf_dev.rdma_device == "mlx5_0"
        assert not pf_dev.virtual
        vf_dev = by_name["pci-0000-81-00-2"]
        assert vf_dev.is_sriov_vf and not vf_dev.HasField("numa_node")
        plain = by_name["plain0"]
        # Not in the fixture tree and no netlink parent device: virtual, no PCI.
        assert plain.virtual and plain.pci_address == "" and not plain.HasField("numa_node")
        assert isinstance(plain, agent_pb2.Device)
        assert inv.find_by(pci_address="0000:81:00.2") is not None
        assert inv.find_by(pci_address="0000:81:00.2").ifname == "vf0"  # type: ignore[union-attr]


@dataclass(frozen=True)
class _Attachment:
    device: str
    original: dict[str, Any]
    claim_uid: str = "claim-1"
    pod_uid: str = "pod-1"
    pod_namespace: str = "ns"
    pod_name: str = "p"
    pod_ifname: str = "net1"


async def test_a_restarted_agent_republishes_an_attached_device_unchanged(
    fake: FakeSys, pci_ids: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only operstate and link type are unknown after a restart; PCI/NUMA facts come from sysfs."""
    pf = fake.pci("0000:81:00.0", total_vfs=4, num_vfs=1, rdma="mlx5_0")
    netdev = fake.netdev("pf0", pf, ifindex=5, mac="0c:42:a1:00:00:05")
    links: tuple[LinkRecord, ...] = (_link("pf0", 5, "0c:42:a1:00:00:05"),)
    attached: list[_Attachment] = []

    async def fake_discover(target: object) -> Discovery:
        return Discovery(links=links, addresses={}, routes=())

    monkeypatch.setattr(inventory, "discover", fake_discover)
    monkeypatch.setattr(inventory, "Sysfs", lambda root: Sysfs(root, pci_ids=[pci_ids]))
    before = Inventory(netns="/nonexistent", sysfs_root=fake.root)
    await before.rescan()
    (seen,) = before.devices()
    assert seen.numa_node == 1 and seen.pcie_root == "pci0000:80" and seen.rdma
    # What hoststate.capture records (hardware: no IFLA_INFO_KIND, kind ""); then
    # the netdev moves into a pod and leaves the node's netlink and class/net views.
    original = {
        "ifname": "pf0", "ifindex": 5, "kind": "", "mtu": 1500, "mac": "0c:42:a1:00:00:05",
        "permanent_mac": "", "alias": "", "up": True, "pci_address": "0000:81:00.0",
        "addresses": [], "routes": [], "neighbors": [], "rules": [],
    }  # fmt: skip
    attached.append(_Attachment(device=seen.name, original=original))
    links = ()
    (fake.root / "class/net/pf0").unlink()
    assert netdev.exists()
    after = Inventory(netns="/nonexistent", sysfs_root=fake.root, attachments=lambda: attached)
    await after.rescan()
    (back,) = after.devices()
    assert back.HasField("allocation") and back.allocation.claim_uid == "claim-1"
    for dev in (seen, back):
        dev.ClearField("allocation")
        dev.ClearField("state")
        dev.ClearField("encapsulation")
    assert back == seen


def test_stand_in_without_sysfs_facts_reads_only_recorded_fields(fake: FakeSys) -> None:
    original = {"ifname": "eth9", "ifindex": 9, "kind": "veth", "mtu": 9000,
                "pci_address": "../../..", "numa_node": 3, "state": "up"}  # fmt: skip
    dev = device_from_original("eth9", original, Sysfs(fake.root, pci_ids=[]))
    assert (dev.kind, dev.mtu, dev.state, dev.encapsulation) == ("veth", 9000, "", "")
    assert dev.numa_node is None and dev.pcie_root == "" and dev.pci_vendor == ""
    vf = fake.pci("0000:81:00.2", numa=-1, physfn="0000:81:00.0")
    assert vf.exists()
    dev = device_from_original("x", {"pci_address": "0000:81:00.2"}, Sysfs(fake.root))
    assert dev.is_sriov_vf and dev.numa_node is None and dev.pcie_root == "pci0000:80"
    assert dev.kind == "device"
