"""The sandbox's control plane: CEL selectors, the allocator, and the claim's status
written through the API server stand-in (which validates it like the real one)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from dranet.errors import InvalidArgumentError, NotFoundError, PeerError
from dranet_sandbox.controlplane import (
    ControlPlane,
    DeviceRequest,
    PodRef,
    allocated_devices,
    allocation_status,
    claim_body,
    device_class_body,
    opaque_config,
    selector_matches,
)
from dranet_sandbox.standins.apiserver import FakeApiServer

NODE = "node-a"
POD = PodRef("default", "web", "pod-uid-1")


def device(name: str, **attributes: Any) -> dict[str, Any]:
    kinds = {str: "string", int: "int", bool: "bool"}
    return {
        "name": name,
        "attributes": {f"dra.net/{k}": {kinds[type(v)]: v} for k, v in attributes.items()},
    }


def slice_body(name: str, devices: list[dict[str, Any]], driver: str = "dra.net") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


def claim(requests: list[DeviceRequest], config: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    body = claim_body("c1", "default", requests, config)
    body["metadata"]["uid"] = "claim-uid"
    return body


CLASSES = {"dranet": device_class_body()}
SLICES = [
    slice_body(
        "s-1", [device("eth1", type="veth", mtu=1500), device("eth2", type="device", mtu=9000)]
    )
]


def test_selectors_see_driver_and_attributes_by_domain() -> None:
    eth = device("eth2", type="device", mtu=9000, rdma=False)
    assert selector_matches('device.driver == "dra.net"', "dra.net", eth)
    assert not selector_matches('device.driver == "gpu.example.com"', "dra.net", eth)
    assert selector_matches('device.attributes["dra.net"].mtu >= 9000', "dra.net", eth)
    assert selector_matches('device.attributes["dra.net"].type == "device"', "dra.net", eth)
    assert not selector_matches('device.attributes["dra.net"].rdma', "dra.net", eth)
    # A missing attribute is an evaluation error: the device does not match.
    assert not selector_matches('device.attributes["dra.net"].numaNode == 0', "dra.net", eth)
    with pytest.raises(InvalidArgumentError, match="does not compile"):
        selector_matches("device.driver ==", "dra.net", eth)


def test_allocation_takes_the_first_free_matching_device_and_orders_configs() -> None:
    classes = {
        "dranet": device_class_body(
            config=[opaque_config({"interface": {"mtu": 1400}})],
        )
    }
    body = claim(
        [DeviceRequest("nic", selectors=('device.attributes["dra.net"].mtu > 1500',))],
        [opaque_config({"interface": {"name": "net1"}})],
    )
    status = allocation_status(body, classes, SLICES, set(), pod=POD, node=NODE)
    devices = status["allocation"]["devices"]
    assert devices["results"] == [
        {"request": "nic", "driver": "dra.net", "pool": NODE, "device": "eth2"}
    ]
    assert [(c["source"], c["requests"]) for c in devices["config"]] == [
        ("FromClass", ["nic"]),
        ("FromClaim", []),
    ]
    assert devices["config"][1]["opaque"]["parameters"] == {"interface": {"name": "net1"}}
    assert status["reservedFor"] == [{"resource": "pods", "name": "web", "uid": "pod-uid-1"}]
    terms = status["allocation"]["nodeSelector"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["values"] == [NODE]


def test_allocation_skips_taken_devices_and_says_when_none_is_left() -> None:
    taken = {("dra.net", NODE, "eth1")}
    status = allocation_status(claim([DeviceRequest()]), CLASSES, SLICES, taken, pod=POD, node=NODE)
    assert [r["device"] for r in status["allocation"]["devices"]["results"]] == ["eth2"]
    with pytest.raises(NotFoundError, match=r"wants 3 device\(s\) of class 'dranet'.* 2 free"):
        allocation_status(
            claim([DeviceRequest(count=3)]), CLASSES, SLICES, set(), pod=POD, node=NODE
        )
    with pytest.raises(NotFoundError, match="DeviceClass 'nope'"):
        allocation_status(
            claim([DeviceRequest(device_class="nope")]), CLASSES, SLICES, set(), pod=POD, node=NODE
        )


def test_two_requests_get_two_devices() -> None:
    body = claim([DeviceRequest("a"), DeviceRequest("b")])
    status = allocation_status(body, CLASSES, SLICES, set(), pod=POD, node=NODE)
    results = status["allocation"]["devices"]["results"]
    assert [(r["request"], r["device"]) for r in results] == [("a", "eth1"), ("b", "eth2")]


def test_allocated_devices_ignores_the_claim_itself() -> None:
    claims: list[dict[str, Any]] = [
        {"metadata": {"uid": "u1"}, "status": {"allocation": {"devices": {"results": [
            {"driver": "dra.net", "pool": NODE, "device": "eth1"}]}}}},
        {"metadata": {"uid": "u2"}, "status": {}},
    ]  # fmt: skip
    assert allocated_devices(claims) == {("dra.net", NODE, "eth1")}
    assert allocated_devices(claims, skip_uid="u1") == set()


@pytest.fixture
def control() -> Iterator[ControlPlane]:
    with FakeApiServer() as api:
        api.add_node(NODE)
        api.put("resourceslices", SLICES[0])
        yield ControlPlane(api, NODE)


def test_control_plane_allocates_through_the_api_server(control: ControlPlane) -> None:
    control.create_device_class()
    control.create_claim("c1", parameters={"interface": {"name": "net1"}})
    control.create_claim("c2")
    assert control.published_devices() == ["eth1", "eth2"]

    first = control.allocate("default", "c1", POD)
    second = control.allocate("default", "c2", PodRef("default", "db", "pod-uid-2"))

    assert first["status"]["allocation"]["devices"]["results"][0]["device"] == "eth1"
    assert second["status"]["allocation"]["devices"]["results"][0]["device"] == "eth2"
    assert control.claim("default", "c1")["status"]["reservedFor"][0]["uid"] == POD.uid
    with pytest.raises(NotFoundError, match="0 free"):
        control.create_claim("c3")
        control.allocate("default", "c3", POD)
    control.deallocate("default", "c1")
    assert control.claim("default", "c1")["status"] == {}
    third = control.allocate("default", "c3", POD)
    assert third["status"]["allocation"]["devices"]["results"][0]["device"] == "eth1"
    control.deallocate("default", "gone")  # a missing claim is fine
    with pytest.raises(PeerError, match="404"):
        control.claim("default", "gone")
