"""Which node link is the recorded device (pure): the netns-gone lookups."""

from __future__ import annotations

from typing import Any

import pytest

from dranet.store import AttachmentPhase, AttachmentRecord
from dranet_netlink_agent.detach import pick_link, temp_name

ORIGINAL = {"ifname": "eth1", "ifindex": 7, "kind": "", "permanent_mac": "AA:BB:CC:00:00:01"}


def _rec(**original: Any) -> AttachmentRecord:
    return AttachmentRecord(
        claim_uid="c", device="pci-0000-8a-00-0", pod_uid="p", pod_namespace="ns",
        pod_name="n", netns_path="/run/netns/gone", phase=AttachmentPhase.ATTACHED,
        host_ifname="eth1", pod_ifname="net1", original={**ORIGINAL, **original},
        result={"ifindex": 3},
    )  # fmt: skip


def _link(ifname: str, ifindex: int, perm: str = "", kind: str = "") -> dict[str, Any]:
    return {"ifname": ifname, "ifindex": ifindex, "permanent_mac": perm, "kind": kind}


def test_permanent_mac_finds_it_under_a_clashing_name() -> None:
    present = [_link("eth1", 9), _link("dev12", 12, perm="aa:bb:cc:00:00:01")]
    assert pick_link(present, _rec()) == 12


def test_pci_address_finds_it_when_it_has_no_permanent_mac() -> None:
    present = [_link("eth1", 9), _link("net1", 14)]
    assert pick_link(present, _rec(permanent_mac=""), pci_ifname="net1") == 14


def test_the_name_we_moved_it_under_wins() -> None:
    present = [_link("eth1", 20), _link("other", 21, perm="aa:bb:cc:00:00:01")]
    assert pick_link(present, _rec(), moved_as="eth1") == 20


def test_temporary_name_and_recorded_index() -> None:
    rec = _rec(permanent_mac="", kind="veth")
    assert temp_name(rec) == "dranet3"
    assert pick_link([_link("dranet3", 30, kind="veth")], rec) == 30
    assert pick_link([_link("net1", 7, kind="veth")], rec) == 7  # never moved, or returned


@pytest.mark.parametrize(
    "present",
    [
        [],
        [_link("eth1", 8, kind="veth")],  # a squatter with its name, another index
        [_link("eth1", 7, kind="bond")],  # its index and name, another kind
        [_link("dev3", 3, perm="aa:bb:cc:00:00:02")],
    ],
)
def test_nothing_matches_means_lost(present: list[dict[str, Any]]) -> None:
    assert pick_link(present, _rec(permanent_mac="", kind="veth")) is None
