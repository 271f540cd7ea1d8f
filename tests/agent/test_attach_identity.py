"""Which link found under a device's name is really that device (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from dranet_netlink_agent.attach import identity_mismatch


@dataclass(frozen=True)
class Dev:
    name: str = "pci-0000-3b-00-0"
    ifname: str = "eth1"
    ifindex: int = 7
    permanent_mac: str = "AA:BB:CC:00:00:01"
    pci_address: str = "0000:3b:00.0"
    virtual: bool = False


def _link(ifindex: int = 7, perm: str = "aa:bb:cc:00:00:01") -> dict[str, Any]:
    return {"ifname": "eth1", "ifindex": ifindex, "permanent_mac": perm}


def test_the_same_device_matches() -> None:
    assert identity_mismatch(_link(), Dev(), "0000:3b:00.0") == ""
    assert identity_mismatch(_link(), Dev(), "") == ""  # the kernel did not say


@pytest.mark.parametrize(
    ("link", "parent", "why"),
    [
        (_link(ifindex=9), "0000:3b:00.0", "ifindex 9, the device has 7"),
        (_link(perm=""), "0000:3b:00.0", "permanent MAC none, the device has aa:bb:cc:00:00:01"),
        (_link(), "0000:5e:00.0", "PCI address 0000:5e:00.0, the device has 0000:3b:00.0"),
    ],
)
def test_another_interface_is_named(link: dict[str, Any], parent: str, why: str) -> None:
    assert identity_mismatch(link, Dev(), parent) == why


def test_what_the_inventory_does_not_know_is_not_checked() -> None:
    bare = Dev(ifindex=0, permanent_mac="", pci_address="")
    assert identity_mismatch(_link(ifindex=99, perm="02:00:00:00:00:09"), bare, "x") == ""
