"""The Preparer against the API server stand-in, a real store and a fake agent."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

import grpc
import pytest

from dranet.agent.v1.agent_pb2_grpc import NetlinkAgentStub
from dranet.store import Store
from dranet_kubelet_plugin.draservice import ClaimRef, Preparer
from dranet_kubelet_plugin.filter import DeviceFilter
from dranet_kubelet_plugin.kube import Kube
from dranet_kubelet_plugin.prepare import ClaimPreparer
from dranet_kubelet_plugin.publisher import SlicePublisher
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import DRIVER, NODE, AgentServer, claim, opaque, result

PUBLISHED = {"eth1", "eth2", "eth3"}


async def published() -> Collection[str]:
    return PUBLISHED


@pytest.fixture
def preparer(kube: Kube, store: Store, agent: AgentServer) -> ClaimPreparer:
    return ClaimPreparer(
        kube=kube,
        store=store,
        agent=agent.stub,
        driver=DRIVER,
        node_name=NODE,
        inventory=published,
    )


def ref(name: str, uid: str) -> ClaimRef:
    return ClaimRef(uid=uid, namespace="default", name=name)


def events(apiserver: FakeApiServer) -> list[dict[str, object]]:
    return apiserver.list("events", "default")


async def test_claim_mixing_drivers_prepares_only_our_devices(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store
) -> None:
    apiserver.put(
        "resourceclaims",
        claim(
            "mixed",
            "uid-1",
            results=[
                result("gpu", "gpu-0", driver="gpu.example.com", pool="other-pool"),
                result("nic", "eth1"),
            ],
            pods=["pod-1"],
        ),
    )
    outcomes = await preparer.prepare([ref("mixed", "uid-1")])
    assert outcomes["uid-1"].error == ""
    assert [(d.pool, d.device, d.requests) for d in outcomes["uid-1"].devices] == [
        (NODE, "eth1", ("nic",))
    ]
    record = store.get_claim("uid-1")
    assert record is not None
    assert [d.device for d in record.devices] == ["eth1"]
    assert record.pod_uids == ("pod-1",)
    assert (record.namespace, record.name) == ("default", "mixed")


async def test_class_then_claim_config_precedence_is_stored(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store
) -> None:
    apiserver.put(
        "resourceclaims",
        claim(
            "cfg",
            "uid-2",
            results=[
                result("a", "eth1"),
                result("b", "eth2"),
            ],
            config=[
                opaque(
                    {"interface": {"mtu": 9000, "name": "net1"}}, source="FromClaim", requests=["a"]
                ),
                opaque({"interface": {"mtu": 1500, "name": "class0"}}, source="FromClass"),
            ],
        ),
    )
    outcomes = await preparer.prepare([ref("cfg", "uid-2")])
    assert outcomes["uid-2"].error == ""
    record = store.get_claim("uid-2")
    assert record is not None
    configs = {d.device: d.config for d in record.devices}
    assert configs["eth1"]["interface"] == {"mtu": 9000, "name": "net1"}  # claim wins
    assert configs["eth2"]["interface"] == {"mtu": 1500, "name": "class0"}  # class only


async def test_invalid_config_is_a_per_claim_error_with_an_event(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store
) -> None:
    apiserver.put(
        "resourceclaims",
        claim(
            "bad",
            "uid-bad",
            results=[result("nic", "eth1")],
            config=[opaque({"interface": {"mtu": 40}})],
        ),
    )
    apiserver.put("resourceclaims", claim("good", "uid-good", results=[result("nic", "eth2")]))
    outcomes = await preparer.prepare([ref("bad", "uid-bad"), ref("good", "uid-good")])
    assert "interface.mtu" in outcomes["uid-bad"].error
    assert "minimum 68" in outcomes["uid-bad"].error
    assert outcomes["uid-good"].error == "" and store.get_claim("uid-good") is not None
    assert store.get_claim("uid-bad") is None  # nothing written for a bad claim
    [event] = events(apiserver)
    assert event["reason"] == "ClaimPrepareFailed"
    assert "interface.mtu" in str(event["message"])
    stored = apiserver.get("resourceclaims", "bad", "default")
    assert stored is not None
    assert event["involvedObject"] == {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "namespace": "default",
        "name": "bad",
        "uid": "uid-bad",
        "resourceVersion": stored["metadata"]["resourceVersion"],
    }


async def test_replaced_claim_is_an_error(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store
) -> None:
    apiserver.put("resourceclaims", claim("c", "new-uid", results=[result("nic", "eth1")]))
    outcomes = await preparer.prepare([ref("c", "old-uid")])
    assert "got replaced" in outcomes["old-uid"].error and "new-uid" in outcomes["old-uid"].error
    assert store.get_claim("old-uid") is None and store.get_claim("new-uid") is None


async def test_missing_claim_and_unpublished_device(
    apiserver: FakeApiServer, preparer: ClaimPreparer
) -> None:
    apiserver.put("resourceclaims", claim("gone-dev", "u2", results=[result("nic", "eth9")]))
    apiserver.put(
        "resourceclaims", claim("other-pool", "u3", results=[result("nic", "eth1", pool="node-b")])
    )
    outcomes = await preparer.prepare(
        [ref("absent", "u1"), ref("gone-dev", "u2"), ref("other-pool", "u3")]
    )
    assert "not found" in outcomes["u1"].error
    assert "eth9" in outcomes["u2"].error and "not published" in outcomes["u2"].error
    assert "node-b" in outcomes["u3"].error


async def test_prepare_is_idempotent(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store
) -> None:
    apiserver.put("resourceclaims", claim("c", "uid-i", results=[result("nic", "eth1")]))
    first, second = await asyncio.gather(
        preparer.prepare([ref("c", "uid-i")]), preparer.prepare([ref("c", "uid-i")])
    )
    third = await preparer.prepare([ref("c", "uid-i")])
    assert first == second == third and first["uid-i"].error == ""
    assert [c.uid for c in store.list_claims()] == ["uid-i"]


async def test_api_server_errors_are_retried(
    apiserver: FakeApiServer, preparer: ClaimPreparer
) -> None:
    apiserver.put("resourceclaims", claim("c", "uid-r", results=[result("nic", "eth1")]))
    apiserver.fail_next("/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/c", count=2)
    outcomes = await preparer.prepare([ref("c", "uid-r")])
    assert outcomes["uid-r"].error == ""


async def test_unprepare_forgets_and_releases(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store, agent: AgentServer
) -> None:
    apiserver.put("resourceclaims", claim("c", "uid-u", results=[result("nic", "eth1")]))
    await preparer.prepare([ref("c", "uid-u")])
    apiserver.delete("resourceclaims", "c", "default")  # already gone: does not matter
    errors = await preparer.unprepare([ref("c", "uid-u"), ref("never", "uid-unknown")])
    assert errors == {"uid-u": "", "uid-unknown": ""}
    assert sorted(agent.agent.released) == ["uid-u", "uid-unknown"]
    assert store.get_claim("uid-u") is None


async def test_agent_down_is_a_per_claim_error(
    apiserver: FakeApiServer, kube: Kube, store: Store, socket_dir: Path
) -> None:
    channel = grpc.aio.insecure_channel(f"unix://{socket_dir / 'nobody.sock'}")
    publisher = SlicePublisher(
        kube=kube,
        agent=NetlinkAgentStub(channel),
        driver=DRIVER,
        node_name=NODE,
        device_filter=DeviceFilter(""),
    )
    preparer = ClaimPreparer(
        kube=kube,
        store=store,
        agent=NetlinkAgentStub(channel),
        driver=DRIVER,
        node_name=NODE,
        inventory=publisher.published_devices,
    )
    apiserver.put("resourceclaims", claim("c", "uid-a", results=[result("nic", "eth1")]))
    try:
        outcomes = await preparer.prepare([ref("c", "uid-a")])
    finally:
        await channel.close(grace=None)
    assert "netlink agent" in outcomes["uid-a"].error
    assert store.get_claim("uid-a") is None


def test_claim_preparer_is_a_draservice_preparer() -> None:
    def as_preparer(preparer: ClaimPreparer) -> Preparer:
        return preparer  # mypy checks the Protocol here

    assert callable(as_preparer)
