"""The API server stand-in answers like the real one (through the real client)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from dranet.errors import NotFoundError
from dranet_kubelet_plugin.kube import Kube, KubeApiError, RetryPolicy
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import NODE


def slice_body(devices: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"generateName": f"00000-dra.net-{NODE}-"},
        "spec": {
            "driver": "dra.net",
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }
    body["spec"].update(spec)
    return body


async def test_create_list_with_field_selector_update_delete(kube: Kube) -> None:
    created = await kube.create_slice(slice_body([{"name": "eth1"}]))
    name = created["metadata"]["name"]
    assert (
        name.startswith(f"00000-dra.net-{NODE}-") and len(name) == len(f"00000-dra.net-{NODE}-") + 5
    )
    await kube.create_slice(
        slice_body(
            [{"name": "eth1"}],
            nodeName="node-b",
            pool={"name": "node-b", "generation": 1, "resourceSliceCount": 1},
        )
    )
    mine = await kube.list_slices("dra.net", NODE)
    assert [s["metadata"]["name"] for s in mine] == [name]
    assert "kind" not in mine[0]  # list items carry no kind, as on a real server

    update = copy.deepcopy(created)
    update["spec"]["devices"] = [{"name": "eth2"}]
    updated = await kube.update_slice(update)
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert updated["metadata"]["generation"] == 2

    with pytest.raises(KubeApiError) as stale:
        await kube.update_slice(update)  # still carries the old resourceVersion
    assert stale.value.status == 409 and stale.value.conflict

    with pytest.raises(KubeApiError) as precondition:
        await kube.delete_slice(name, uid="not-the-uid")
    assert precondition.value.status == 409
    assert await kube.delete_slice(name, uid=created["metadata"]["uid"]) is True
    assert await kube.delete_slice(name) is False  # 404 is fine for a delete


async def test_not_found_is_a_not_found_error(kube: Kube) -> None:
    with pytest.raises(NotFoundError, match=r'resourceclaims\.resource\.k8s\.io "nope" not found'):
        await kube.get_claim("default", "nope")


async def test_unsupported_field_selector_is_a_bad_request(kube: Kube) -> None:
    with pytest.raises(KubeApiError) as caught:
        await kube.request(
            "GET",
            "/apis/resource.k8s.io/v1/resourceslices",
            query=[("fieldSelector", "spec.colour=red")],
        )
    assert caught.value.status == 400 and "field label not supported" in str(caught.value)


def _causes(exc: KubeApiError) -> dict[str, str]:
    return {c["field"]: c["message"] for c in exc.causes}


@pytest.mark.parametrize(
    ("devices", "field", "words"),
    [
        ([{"name": f"d{i}"} for i in range(129)], "spec.devices", "at most 128"),
        ([{"name": "Eth_1"}], "spec.devices[0].name", "RFC 1123 label"),
        (
            [{"name": "d", "attributes": {"dra.net/if-name": {"string": "x"}}}],
            "spec.devices[0].attributes[dra.net/if-name]",
            "C identifier",
        ),
        (
            [{"name": "d", "attributes": {"Bad_Domain!/x": {"string": "x"}}}],
            "spec.devices[0].attributes[Bad_Domain!/x]",
            "domain",
        ),
        (
            [{"name": "d", "attributes": {"dra.net/ipv4": {"string": "1" * 65}}}],
            "spec.devices[0].attributes[dra.net/ipv4].string",
            "Too long",
        ),
        (
            [{"name": "d", "attributes": {f"a{i}": {"int": i} for i in range(33)}}],
            "spec.devices[0].attributes",
            "at most 32",
        ),
        (
            [{"name": "d", "attributes": {"x": {"int": 1, "bool": True}}}],
            "spec.devices[0].attributes[x]",
            "exactly one",
        ),
        ([{"name": "d"}, {"name": "d"}], "spec.devices[1].name", "Duplicate"),
    ],
)
async def test_slice_validation(
    kube: Kube, devices: list[dict[str, Any]], field: str, words: str
) -> None:
    with pytest.raises(KubeApiError) as caught:
        await kube.create_slice(slice_body(devices))
    assert caught.value.status == 422 and caught.value.reason == "Invalid"
    assert words in _causes(caught.value)[field]


async def test_driver_and_pool_rules(kube: Kube) -> None:
    with pytest.raises(KubeApiError) as caught:
        await kube.create_slice(
            slice_body([], driver="Dra_Net", pool={"name": "a//b", "resourceSliceCount": 0})
        )
    causes = _causes(caught.value)
    assert {"spec.driver", "spec.pool.name", "spec.pool.resourceSliceCount"} <= set(causes)


async def test_immutable_fields(kube: Kube) -> None:
    created = await kube.create_slice(slice_body([]))
    moved = copy.deepcopy(created)
    moved["spec"]["driver"] = "other.example.com"
    with pytest.raises(KubeApiError) as caught:
        await kube.update_slice(moved)
    assert "immutable" in _causes(caught.value)["spec.driver"]


async def test_claim_status_must_name_allocated_devices(
    apiserver: FakeApiServer, kube: Kube
) -> None:
    apiserver.put(
        "resourceclaims",
        {
            "metadata": {"name": "c", "namespace": "default"},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": "r", "driver": "dra.net", "pool": NODE, "device": "eth1"}
                        ]
                    }
                }
            },
        },
    )
    claim = await kube.get_claim("default", "c")
    claim["status"]["devices"] = [{"driver": "dra.net", "pool": NODE, "device": "eth9"}]
    with pytest.raises(KubeApiError) as caught:
        await kube.replace_claim_status(claim)
    assert "must be an allocated device" in _causes(caught.value)["status.devices[0]"]
    claim["status"]["devices"] = [
        {
            "driver": "dra.net",
            "pool": NODE,
            "device": "eth1",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Up",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "networkData": {"interfaceName": "net1", "ips": ["10.0.0.5/24"]},
        }
    ]
    written = await kube.replace_claim_status(claim)
    assert written["status"]["devices"][0]["networkData"]["interfaceName"] == "net1"
    stored = apiserver.get("resourceclaims", "c", "default")
    assert stored is not None and stored["status"]["devices"][0]["device"] == "eth1"


async def test_merge_patch_on_status(apiserver: FakeApiServer, kube: Kube) -> None:
    apiserver.put(
        "resourceclaims", {"metadata": {"name": "c", "namespace": "default"}, "spec": {"x": 1}}
    )
    patched = await kube.request(
        "PATCH",
        "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/c/status",
        body={
            "status": {"reservedFor": [{"resource": "pods", "name": "p", "uid": "1"}]},
            "spec": {"x": 2},
        },
        content_type="application/merge-patch+json",
    )
    assert patched["status"]["reservedFor"][0]["uid"] == "1"
    assert patched["spec"] == {"x": 1}  # the status subresource never changes spec


async def test_injected_500s_are_retried(apiserver: FakeApiServer, kube: Kube) -> None:
    apiserver.fail_next("/api/v1/nodes/", count=2, status=500)
    node = await kube.get_node(NODE)
    assert node["metadata"]["name"] == NODE
    assert [m for m, p in apiserver.requests if p == f"/api/v1/nodes/{NODE}"] == ["GET"] * 3


async def test_persistent_500s_surface_as_server_errors(
    apiserver: FakeApiServer, kube: Kube
) -> None:
    apiserver.fail_next("/api/v1/nodes/", count=10, status=503)
    with pytest.raises(KubeApiError) as caught:
        await kube.get_node(NODE)
    assert caught.value.status == 503 and caught.value.retryable


async def test_hangs_time_out_and_are_retried(apiserver: FakeApiServer, tmp_path: Path) -> None:
    config = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    kube = Kube.from_kubeconfig(str(config), timeout=0.3, retry=RetryPolicy(initial_wait=0.01))
    apiserver.hang_next("/api/v1/nodes/", seconds=1.0, count=1)
    try:
        node = await asyncio.wait_for(kube.get_node(NODE), timeout=10)
    finally:
        kube.close()
    assert node["metadata"]["name"] == NODE
    assert len([p for _, p in apiserver.requests if p == f"/api/v1/nodes/{NODE}"]) == 2


async def test_delete_collection_wipes_a_nodes_slices(apiserver: FakeApiServer, kube: Kube) -> None:
    await kube.create_slice(slice_body([]))
    assert apiserver.delete_collection("resourceslices", f"spec.nodeName={NODE}") == 1
    assert await kube.list_slices("dra.net", NODE) == []
