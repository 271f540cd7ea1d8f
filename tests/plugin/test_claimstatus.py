"""ResourceClaim.status.devices from the agent's attachment watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import ClaimRecord, PreparedDevice, Store
from dranet_kubelet_plugin.claimstatus import (
    ClaimStatusWriter,
    status_entry,
    updated_status_devices,
)
from dranet_kubelet_plugin.kube import Kube
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import DRIVER, NODE, AgentServer, claim, eventually, result

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
OTHER = {
    "driver": "gpu.example.com",
    "pool": "gpus",
    "device": "gpu-0",
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Up",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ],
}


def iface(
    claim_uid: str = "uid-1", device: str = "eth1", **fields: Any
) -> agent_pb2.InterfaceResult:
    values: dict[str, Any] = {
        "claim_uid": claim_uid,
        "request": "nic",
        "pool": NODE,
        "device": device,
        "interface_name": "net1",
        "mac": "02:00:00:00:00:aa",
        "ips": ["10.0.0.5/24"],
    }
    values.update(fields)
    return agent_pb2.InterfaceResult(**values)


def attachment(**fields: Any) -> agent_pb2.Attachment:
    return agent_pb2.Attachment(
        pod=agent_pb2.PodRef(uid="pod-1", namespace="default", name="web"),
        netns_path="/var/run/netns/cni-1",
        interface=iface(**fields),
    )


# --- pure -----------------------------------------------------------------------------------


def test_entry_has_network_data_and_a_ready_condition() -> None:
    entry = status_entry(DRIVER, iface(ips=["10.0.0.5/24", "10.0.0.5/24", "fd00::5/64"]), now=T0)
    assert entry["networkData"] == {
        "interfaceName": "net1",
        "ips": ["10.0.0.5/24", "fd00::5/64"],
        "hardwareAddress": "02:00:00:00:00:aa",
    }
    assert entry["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "NetworkDeviceReady",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = status_entry(DRIVER, iface(), now=T0)
    same = status_entry(DRIVER, iface(), now=T1, previous=first)
    assert same["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    down = iface(conditions=[agent_pb2.Condition(type="Ready", status="False", reason="Down")])
    changed = status_entry(DRIVER, down, now=T1, previous=first)
    assert changed["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_other_drivers_entries_are_kept_and_unallocated_devices_skipped() -> None:
    c = claim("c", "uid-1", results=[result("nic", "eth1")])
    c["status"]["devices"] = [OTHER]
    attached = {(NODE, "eth1"): iface(), (NODE, "eth7"): iface(device="eth7")}
    devices = updated_status_devices(c, DRIVER, attached, now=T0)
    assert devices is not None
    assert devices[0] == OTHER and [d["device"] for d in devices[1:]] == ["eth1"]
    c["status"]["devices"] = devices
    assert updated_status_devices(c, DRIVER, attached, now=T1) is None  # nothing to write
    assert updated_status_devices(c, DRIVER, {}, now=T1) == [OTHER]  # detached: ours removed


# --- against the stand-in -----------------------------------------------------------------


@pytest.fixture
def prepared(apiserver: FakeApiServer, store: Store) -> dict[str, Any]:
    body = claim(
        "web-nic",
        "uid-1",
        results=[
            result("nic", "eth1"),
            result("gpu", "gpu-0", driver="gpu.example.com", pool="gpus"),
        ],
    )
    body["status"]["devices"] = [OTHER]
    stored = apiserver.put("resourceclaims", body)
    store.put_claim(
        ClaimRecord(
            uid="uid-1",
            namespace="default",
            name="web-nic",
            pod_uids=("pod-1",),
            devices=(PreparedDevice("nic", NODE, "eth1", {}),),
        )
    )
    return stored


@pytest.fixture
async def writer(kube: Kube, store: Store, agent: AgentServer) -> AsyncIterator[ClaimStatusWriter]:
    status_writer = ClaimStatusWriter(
        kube=kube, store=store, agent=agent.stub, driver=DRIVER, reconnect_delay=0.05
    )
    task = asyncio.create_task(status_writer.run())
    yield status_writer
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def status_devices(apiserver: FakeApiServer) -> list[dict[str, Any]]:
    stored = apiserver.get("resourceclaims", "web-nic", "default")
    assert stored is not None
    return list(stored["status"].get("devices") or [])


def ours(apiserver: FakeApiServer) -> list[dict[str, Any]]:
    return [d for d in status_devices(apiserver) if d["driver"] == DRIVER]


async def test_network_data_written_after_attach_and_removed_after_detach(
    apiserver: FakeApiServer,
    prepared: dict[str, Any],
    writer: ClaimStatusWriter,
    agent: AgentServer,
) -> None:
    agent.agent.attach(attachment())
    [entry] = await eventually(lambda: ours(apiserver))
    assert entry["pool"] == NODE and entry["device"] == "eth1"
    assert entry["networkData"] == {
        "interfaceName": "net1",
        "ips": ["10.0.0.5/24"],
        "hardwareAddress": "02:00:00:00:00:aa",
    }
    assert entry["conditions"][0]["type"] == "Ready" and entry["conditions"][0]["status"] == "True"
    assert OTHER in status_devices(apiserver)
    agent.agent.detach("uid-1", "eth1")
    await eventually(lambda: not ours(apiserver))
    assert status_devices(apiserver) == [OTHER]


async def test_conflicts_are_retried(
    apiserver: FakeApiServer,
    prepared: dict[str, Any],
    writer: ClaimStatusWriter,
    agent: AgentServer,
) -> None:
    apiserver.fail_next(
        "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/web-nic/status",
        count=2,
        status=409,
        method="PUT",
    )
    agent.agent.attach(attachment())
    await eventually(lambda: ours(apiserver))
    puts = [p for m, p in apiserver.requests if m == "PUT"]
    assert len(puts) == 3


async def test_attachments_are_consumed_while_the_api_server_hangs(
    apiserver: FakeApiServer,
    prepared: dict[str, Any],
    writer: ClaimStatusWriter,
    agent: AgentServer,
) -> None:
    apiserver.hang_next(
        "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/web-nic",
        seconds=1.0,
        method="GET",
    )
    agent.agent.attach(attachment())
    agent.agent.attach(attachment(claim_uid="uid-2", device="eth2"))
    # both events are taken off the stream at once, whatever the API server does
    await eventually(lambda: "uid-2" in writer._attached, timeout=0.5)
    await eventually(lambda: ours(apiserver), timeout=5)


async def test_attachment_of_an_unknown_claim_is_ignored(
    apiserver: FakeApiServer,
    prepared: dict[str, Any],
    writer: ClaimStatusWriter,
    agent: AgentServer,
) -> None:
    agent.agent.attach(attachment(claim_uid="uid-not-in-store"))
    agent.agent.attach(attachment())
    await eventually(lambda: ours(apiserver))
    await eventually(lambda: writer.writes >= 1)
    assert writer.writes == 1
    assert len([m for m, _ in apiserver.requests if m == "PUT"]) == 1
