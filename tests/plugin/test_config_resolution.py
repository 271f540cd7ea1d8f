"""Which opaque configs apply to a result, in which order, and how they merge."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dranet_kubelet_plugin.prepare import (
    ClaimError,
    configs_for_result,
    failure_event,
    our_results,
    reserved_pods,
    resolve_config,
)

from .fakes import claim, opaque, result


def test_only_our_driver_results_are_kept() -> None:
    c = claim(
        "c", "u", results=[result("nic", "eth1"), result("gpu", "gpu0", driver="gpu.example.com")]
    )
    assert [r["device"] for r in our_results(c, "dra.net")] == ["eth1"]


def test_class_configs_come_before_claim_configs_whatever_the_list_order() -> None:
    c = claim(
        "c",
        "u",
        results=[result("nic", "eth1")],
        config=[
            opaque({"n": "claim-1"}, source="FromClaim"),
            opaque({"n": "class"}, source="FromClass"),
            opaque({"n": "claim-2"}, source="FromClaim"),
        ],
    )
    assert configs_for_result(c, "dra.net", "nic") == [
        {"n": "class"},
        {"n": "claim-1"},
        {"n": "claim-2"},
    ]


def test_request_matching_and_other_drivers() -> None:
    c = claim(
        "c",
        "u",
        results=[result("nic", "eth1")],
        config=[
            opaque({"n": "all"}),
            opaque({"n": "nic"}, requests=["nic"]),
            opaque({"n": "other-request"}, requests=["gpu"]),
            opaque({"n": "other-driver"}, driver="gpu.example.com"),
            {"source": "FromClaim", "requests": []},  # a non-opaque config kind
        ],
    )
    assert configs_for_result(c, "dra.net", "nic") == [{"n": "all"}, {"n": "nic"}]
    # a subrequest result also takes the configs of its parent request
    assert configs_for_result(c, "dra.net", "nic/fast") == [{"n": "all"}, {"n": "nic"}]


def test_claim_config_overrides_class_config_key_by_key() -> None:
    c = claim(
        "c",
        "u",
        results=[result("nic", "eth1")],
        config=[
            opaque({"interface": {"name": "net1", "mtu": 1500}}, source="FromClass"),
            opaque({"interface": {"mtu": 9000}}),
        ],
    )
    resolved = resolve_config(c, "dra.net", c["status"]["allocation"]["devices"]["results"][0])
    assert resolved["interface"]["name"] == "net1"
    assert resolved["interface"]["mtu"] == 9000


def test_invalid_config_names_the_field_and_device() -> None:
    c = claim(
        "c", "u", results=[result("nic", "eth1")], config=[opaque({"interface": {"mtu": 40}})]
    )
    with pytest.raises(ClaimError) as caught:
        resolve_config(c, "dra.net", c["status"]["allocation"]["devices"]["results"][0])
    text = str(caught.value)
    assert "interface.mtu" in text and "eth1" in text and "nic" in text


def test_dhcp_is_refused_until_the_driver_runs_a_dhcp_client() -> None:
    c = claim(
        "c", "u", results=[result("nic", "eth1")], config=[opaque({"interface": {"dhcp": True}})]
    )
    with pytest.raises(ClaimError, match=r"interface\.dhcp: DHCP is not supported"):
        resolve_config(c, "dra.net", c["status"]["allocation"]["devices"]["results"][0])


def test_parameters_must_be_an_object() -> None:
    c = claim("c", "u", results=[result("nic", "eth1")], config=[opaque(["not", "an", "object"])])
    with pytest.raises(ClaimError, match="must be a JSON object"):
        configs_for_result(c, "dra.net", "nic")


def test_reserved_pods_only_counts_pods() -> None:
    c = claim("c", "u", results=[], pods=["p1"])
    c["status"]["reservedFor"].append({"apiGroup": "example.com", "resource": "pods", "uid": "x"})
    assert reserved_pods(c) == ("p1",)


def test_failure_event_points_at_the_claim() -> None:
    c = claim("web", "uid-1", results=[])
    event = failure_event(
        c, "bad", driver="dra.net", node="node-a", now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    assert event["involvedObject"]["kind"] == "ResourceClaim"
    assert event["involvedObject"]["uid"] == "uid-1"
    assert event["reason"] == "ClaimPrepareFailed" and event["type"] == "Warning"
    assert event["lastTimestamp"] == "2026-01-02T00:00:00Z"
