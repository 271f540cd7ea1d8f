"""The `described` facts of a host-state record: read by the stand-in, ignored by restore.

Pure logic, no kernel: records written before the facts were kept must still
make a device, and restore must never act on the descriptive keys.
"""

from __future__ import annotations

from typing import Any

from dranet_netlink_agent.device import DESCRIBED, described, device_from_original
from dranet_netlink_agent.discovery import LinkRecord
from dranet_netlink_agent.hostrestore import link_values

OLD_ROW: dict[str, Any] = {
    "ifname": "eth7", "ifindex": 7, "mtu": 9000, "mac": "02:00:00:00:00:07",
    "permanent_mac": "", "alias": "", "up": True, "kind": "veth",
    "gso_max_size": 65536, "gro_max_size": 65536,
    "gso_ipv4_max_size": 65536, "gro_ipv4_max_size": 65536,
    "pci_address": "", "addresses": [{"address": "10.9.0.2", "prefixlen": 24}],
}  # fmt: skip


def _link(**over: Any) -> LinkRecord:
    base: dict[str, Any] = dict(
        ifindex=7, ifname="eth7", mac="02:00:00:00:00:07", permanent_mac="", mtu=9000,
        kind="veth", state="lowerlayerdown", alias="to spine", encapsulation="ether",
        loopback=False, master=0, parent_bus="", parent_dev="",
    )  # fmt: skip
    return LinkRecord(**(base | over))


def test_an_old_row_without_the_facts_falls_back_as_before() -> None:
    dev = device_from_original("eth7", OLD_ROW)
    assert (dev.kind, dev.state, dev.encapsulation, dev.alias, dev.virtual) == (
        "veth", "", "", "", False,
    )  # fmt: skip
    assert dev.ipv4 == ("10.9.0.2/24",) and dev.mtu == 9000


def test_recorded_facts_are_republished() -> None:
    row = OLD_ROW | {"kind": "", DESCRIBED: described(_link(kind="device", parent_dev="x"))}
    dev = device_from_original("eth7", row)
    assert (dev.kind, dev.state, dev.encapsulation, dev.alias, dev.virtual) == (
        "device", "lowerlayerdown", "ether", "to spine", False,
    )  # fmt: skip
    assert device_from_original("eth7", OLD_ROW | {DESCRIBED: described(_link())}).virtual


def test_the_restorable_alias_wins_over_the_described_one() -> None:
    row = OLD_ROW | {"alias": "kept", DESCRIBED: described(_link())}
    assert device_from_original("eth7", row).alias == "kept"


def test_a_malformed_facts_entry_is_ignored() -> None:
    dev = device_from_original("eth7", OLD_ROW | {DESCRIBED: ["not", "a", "dict"]})
    assert (dev.state, dev.virtual) == ("", False)


def test_restore_ignores_the_described_facts() -> None:
    facts = described(_link(alias="described only"))
    assert link_values(OLD_ROW | {DESCRIBED: facts}) == link_values(OLD_ROW)
