from __future__ import annotations

from dranet.agent.v1 import agent_pb2
from dranet_kubelet_plugin.attributes import clip, device_attributes, join_within

from .fakes import nic


def test_dranet_attributes_under_the_driver_domain() -> None:
    device = nic(
        "pci-0000-8a-00-0",
        ifname="ens5",
        type="device",
        virtual=False,
        pci_address="0000:8a:00.0",
        pci_vendor="Mellanox Technologies",
        numa_node=1,
        pcie_root="pci0000:80",
        sriov=True,
        sriov_vfs=4,
        rdma=True,
        rdma_device="mlx5_0",
        ipv4=["10.0.0.2/24"],
    )
    attrs = device_attributes(device, "dra.net")
    assert attrs["dra.net/ifName"] == {"string": "ens5"}
    assert attrs["dra.net/pciAddress"] == {"string": "0000:8a:00.0"}
    assert attrs["dra.net/mtu"] == {"int": 1500}
    assert attrs["dra.net/type"] == {"string": "device"}
    assert attrs["dra.net/virtual"] == {"bool": False}
    assert attrs["dra.net/sriov"] == {"bool": True}
    assert attrs["dra.net/sriovVfs"] == {"int": 4}
    assert attrs["dra.net/rdmaDevice"] == {"string": "mlx5_0"}
    assert attrs["dra.net/ipv4"] == {"string": "10.0.0.2/24"}
    assert attrs["resource.kubernetes.io/numaNode"] == {"int": 1}
    assert attrs["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:80"}
    assert "dra.net/isSriovVf" not in attrs  # only set when true, as dranet
    assert len(attrs) <= 32


def test_domain_follows_the_driver_name() -> None:
    attrs = device_attributes(nic("eth1"), "net.example.com")
    assert "net.example.com/ifName" in attrs
    assert not any(k.startswith("dra.net/") for k in attrs)


def test_no_numa_attributes_without_affinity() -> None:
    assert "resource.kubernetes.io/numaNode" not in device_attributes(nic("eth1"), "dra.net")
    negative = device_attributes(nic("eth1", numa_node=-1), "dra.net")
    assert "resource.kubernetes.io/numaNode" not in negative
    zero = device_attributes(nic("eth1", numa_node=0), "dra.net")
    assert zero["resource.kubernetes.io/numaNode"] == {"int": 0}


def test_addresses_are_cut_at_whole_addresses() -> None:
    ips = [f"2001:db8:aaaa:bbbb:cccc:dddd:eeee:{i:04x}/64" for i in range(5)]
    attrs = device_attributes(nic("eth1", ipv6=ips), "dra.net")
    value = attrs["dra.net/ipv6"]["string"]
    assert len(value.encode()) <= 64
    assert value.split(",") == sorted(ips)[: len(value.split(","))]  # whole, sorted prefix


def test_join_within_keeps_whole_values() -> None:
    values = ["10.0.0.1/24", "10.0.0.2/24", "10.0.0.3/24"]
    assert join_within(values, limit=23) == "10.0.0.1/24,10.0.0.2/24"
    assert join_within(values, limit=22) == "10.0.0.1/24"
    assert join_within(["x" * 70]) == ""


def test_long_strings_are_clipped_on_character_boundaries() -> None:
    name = "Ethernet Controller E810-C for QSFP with a very long marketing name é"
    attrs = device_attributes(nic("eth1", pci_device=name), "dra.net")
    assert len(attrs["dra.net/pciDevice"]["string"].encode()) <= 64
    assert clip("é" * 40).encode().decode() == "é" * 32  # 2-byte chars never split


def test_empty_strings_are_not_published() -> None:
    attrs = device_attributes(agent_pb2.Device(name="eth9"), "dra.net")
    assert "dra.net/ifName" not in attrs and "dra.net/mac" not in attrs
    assert attrs["dra.net/virtual"] == {"bool": False}
