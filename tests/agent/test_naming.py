"""DRA device names: the rules of dranet's pkg/names, including the base32 fallback."""

from __future__ import annotations

import base64

import pytest

from dranet_netlink_agent.naming import (
    device_name,
    ifname_from_device_name,
    interface_device_name,
    is_dns_label,
    pci_device_name,
)


def test_pci_address_becomes_a_label() -> None:
    assert pci_device_name("0000:8a:00.0") == "pci-0000-8a-00-0"
    assert device_name("enp138s0f0", "0000:8a:00.1") == "pci-0000-8a-00-1"
    assert is_dns_label(pci_device_name("0000:8a:00.0"))


@pytest.mark.parametrize("ifname", ["eth0", "net1", "veth-a1", "a", "9x"])
def test_dns_label_interfaces_keep_their_name(ifname: str) -> None:
    assert device_name(ifname) == ifname
    assert ifname_from_device_name(ifname) == ifname


@pytest.mark.parametrize("ifname", ["mlx5_6", "Eth0", "eth0.100", "-lead", "trail-", "ib0@x"])
def test_other_names_are_base32_encoded(ifname: str) -> None:
    name = interface_device_name(ifname)
    assert name.startswith("net-")
    payload = name.removeprefix("net-")
    assert payload == payload.lower() and "=" not in payload
    # Decoding with the standard alphabet gives the interface name back.
    padded = payload.upper() + "=" * (-len(payload) % 8)
    assert base64.b32decode(padded).decode() == ifname
    assert is_dns_label(name)
    assert ifname_from_device_name(name) == ifname


def test_known_base32_value() -> None:
    # RFC 4648 test vector: base32("foobar") = "MZXW6YTBOI======".
    assert interface_device_name("foo_bar") == "net-mzxw6x3cmfza"
    assert interface_device_name("FOOBAR").startswith("net-")
    assert base64.b32encode(b"foobar") == b"MZXW6YTBOI======"
    assert interface_device_name("Foobar") != interface_device_name("foobar")


def test_longest_interface_name_fits_a_label() -> None:
    ifname = "A" * 15  # IFNAMSIZ - 1
    assert len(interface_device_name(ifname)) <= 63
    assert is_dns_label(interface_device_name(ifname))


def test_empty_and_edge_cases() -> None:
    assert interface_device_name("") == ""
    assert not is_dns_label("a" * 64)
    assert is_dns_label("a" * 63)
    assert not is_dns_label("")
    assert ifname_from_device_name("pci-0000-8a-00-0") is None
