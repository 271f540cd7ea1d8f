"""A detach that lands after unprepare deleted the claim row still clears status.devices.

When the stop was missed, the agent detaches inside ReleaseClaim, and the
DETACHED event races with the row's deletion: the writer must not need the row
to find the ResourceClaim then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import ClaimRecord, PreparedDevice, Store
from dranet_kubelet_plugin.claimstatus import ClaimStatusWriter
from dranet_kubelet_plugin.kube import Kube
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import DRIVER, NODE, AgentServer, claim, eventually, result

Kind = agent_pb2.AttachmentEvent.Kind
READY = {
    "driver": DRIVER,
    "pool": NODE,
    "device": "eth1",
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "NetworkDeviceReady",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
    "networkData": {"interfaceName": "net1"},
}


def attachment() -> agent_pb2.Attachment:
    return agent_pb2.Attachment(
        pod=agent_pb2.PodRef(uid="pod-1", namespace="default", name="web"),
        netns_path="/var/run/netns/cni-1",
        interface=agent_pb2.InterfaceResult(
            claim_uid="uid-1", request="nic", pool=NODE, device="eth1", interface_name="net1"
        ),
    )


@pytest.fixture
def prepared(apiserver: FakeApiServer, store: Store) -> None:
    apiserver.put("resourceclaims", claim("web-nic", "uid-1", results=[result("nic", "eth1")]))
    store.put_claim(
        ClaimRecord(
            uid="uid-1",
            namespace="default",
            name="web-nic",
            pod_uids=("pod-1",),
            devices=(PreparedDevice("nic", NODE, "eth1", {}),),
        )
    )


def new_writer(kube: Kube, store: Store, agent: AgentServer) -> ClaimStatusWriter:
    return ClaimStatusWriter(
        kube=kube, store=store, agent=agent.stub, driver=DRIVER, reconnect_delay=0.05
    )


@pytest.fixture
async def running(kube: Kube, store: Store, agent: AgentServer) -> AsyncIterator[ClaimStatusWriter]:
    writer = new_writer(kube, store, agent)
    task = asyncio.create_task(writer.run())
    yield writer
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def ours(apiserver: FakeApiServer) -> list[dict[str, Any]]:
    stored = apiserver.get("resourceclaims", "web-nic", "default")
    assert stored is not None
    return [d for d in stored["status"].get("devices") or [] if d["driver"] == DRIVER]


async def test_detach_after_the_row_is_deleted_clears_the_status(
    apiserver: FakeApiServer,
    prepared: None,
    running: ClaimStatusWriter,
    store: Store,
    agent: AgentServer,
) -> None:
    agent.agent.attach(attachment())
    await eventually(lambda: ours(apiserver))
    assert store.delete_claim("uid-1")  # unprepare forgets the claim first ...
    agent.agent.detach("uid-1", "eth1")  # ... and the release detaches afterwards
    await eventually(lambda: not ours(apiserver))
    # Once written with nothing attached, the names are dropped again.
    await eventually(lambda: "uid-1" not in running._names)


async def test_names_from_a_snapshot_outlive_the_row(
    apiserver: FakeApiServer, prepared: None, kube: Kube, store: Store, agent: AgentServer
) -> None:
    # A plugin restarted after the attach: status says Ready from the earlier process.
    body = apiserver.get("resourceclaims", "web-nic", "default")
    assert body is not None
    body["status"]["devices"] = [READY]
    apiserver.put("resourceclaims", body)
    writer = new_writer(kube, store, agent)
    # The stream is read before the writer got to the claim; then the row goes.
    await writer.handle_event(
        agent_pb2.AttachmentEvent(kind=Kind.SNAPSHOT, attachments=[attachment()])
    )
    store.delete_claim("uid-1")
    await writer.handle_event(
        agent_pb2.AttachmentEvent(kind=Kind.DETACHED, attachments=[attachment()])
    )
    assert await writer.write_claim("uid-1") is True
    assert ours(apiserver) == []
