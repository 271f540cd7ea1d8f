"""The NetlinkAgent gRPC servicer over a real unix socket: results, events, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import AttachmentPhase, Store
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.service import AttachmentHub, NetlinkAgentService
from dranet_sandbox.netlab import NetLab

pytestmark = pytest.mark.root
POD = agent_pb2.PodRef(uid="pod-s", namespace="default", name="s-0")


class Devices:
    """The inventory's listing half, over the lab resolver."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver

    def devices(self) -> list[agent_pb2.Device]:
        return [agent_pb2.Device(name=d.name, ifname=d.ifname) for d in self.resolver._all()]

    async def subscribe(self) -> AsyncIterator[agent_pb2.DeviceEvent]:
        yield agent_pb2.DeviceEvent(kind=agent_pb2.DeviceEvent.SNAPSHOT, devices=self.devices())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolver, name)


@pytest.fixture
async def stub(ctx: AgentContext, serve_agent: Any) -> Any:
    hub = AttachmentHub()
    ctx.listener = hub.publish
    return await serve_agent(NetlinkAgentService(ctx, Devices(ctx.resolver), hub))


async def test_attach_list_watch_detach_round_trip(
    lab: NetLab, plugin_store: Store, kit: Any, stub: Any
) -> None:
    lab.add_nic("nics", node_cidr="10.51.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nics", {"interface": {"name": "net1", "mtu": 1400}}))
    listed = await stub.ListDevices(agent_pb2.ListDevicesRequest())
    assert [d.name for d in listed.devices] == ["nics"]
    watch = stub.WatchAttachments(agent_pb2.WatchAttachmentsRequest())
    first = await watch.read()
    assert first.kind == agent_pb2.AttachmentEvent.SNAPSHOT and not first.attachments

    resp = await stub.AttachPod(agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod)))

    (iface,) = resp.interfaces
    assert (iface.claim_uid, iface.device, iface.interface_name) == ("claim-1", "nics", "net1")
    assert (iface.request, iface.pool, iface.mtu) == ("req0", "node-a", 1400)
    assert list(iface.ips) == ["10.51.0.2/24"]
    assert iface.mac == lab.link("net1", pod)["address"]  # type: ignore[index]
    assert [(c.type, c.status) for c in iface.conditions] == [
        ("Ready", "True"),
        ("NetworkReady", "True"),
    ]
    event = await asyncio.wait_for(watch.read(), 5)
    assert event.kind == agent_pb2.AttachmentEvent.ATTACHED
    assert event.attachments[0].interface.interface_name == "net1"
    listed_att = await stub.ListAttachments(agent_pb2.ListAttachmentsRequest())
    assert [a.pod.uid for a in listed_att.attachments] == [POD.uid]

    det = await stub.DetachPod(agent_pb2.DetachPodRequest(pod=POD))
    assert [(d.device, d.outcome) for d in det.devices] == [
        ("nics", agent_pb2.DetachedDevice.RESTORED)
    ]
    event = await asyncio.wait_for(watch.read(), 5)
    assert event.kind == agent_pb2.AttachmentEvent.DETACHED
    watch.cancel()
    again = await stub.ReleaseClaim(agent_pb2.ReleaseClaimRequest(claim_uid="claim-1"))
    assert list(again.devices) == []


async def _refused(stub: Any, pod: agent_pb2.PodRef, path: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AttachPod(agent_pb2.AttachPodRequest(pod=pod, netns_path=path))
    return err.value


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("unprepared", grpc.StatusCode.FAILED_PRECONDITION, "not a device of this node"),
        ("dotdot", grpc.StatusCode.INVALID_ARGUMENT, "contains '..'"),
        ("outside", grpc.StatusCode.FAILED_PRECONDITION, "outside the allowed roots"),
        ("not-netns", grpc.StatusCode.FAILED_PRECONDITION, "is not a network namespace"),
        ("uplink", grpc.StatusCode.FAILED_PRECONDITION, "uplink"),
        ("no-uid", grpc.StatusCode.INVALID_ARGUMENT, "pod.uid is empty"),
    ],
)
async def test_refusals_are_clear_and_change_nothing(
    *,
    lab: NetLab,
    ctx: AgentContext,
    plugin_store: Store,
    kit: Any,
    stub: Any,
    tmp_path: Path,
    case: str,
    code: grpc.StatusCode,
    message: str,
) -> None:
    lab.add_nic("nicq", node_cidr="10.52.0.2/24")
    pod = lab.add_pod()
    path = lab.path(pod)
    before = kit.snapshot(lab.node, "nicq")
    device, pod_ref = "nicq", POD
    if case == "unprepared":
        device = "nic-not-here"
    elif case == "dotdot":
        path = f"/run/netns/../netns/{pod}"
    elif case == "outside":
        path = "/etc/hostname"
    elif case == "not-netns":
        plain = tmp_path / "netns" / "plain"
        plain.parent.mkdir()
        plain.write_text("not a namespace")
        ctx.netns_roots = (*ctx.netns_roots, str(plain.parent))
        path = str(plain)
    elif case == "uplink":
        ctx.resolver.uplinks.add("nicq")  # type: ignore[attr-defined]
    elif case == "no-uid":
        pod_ref = agent_pb2.PodRef(name="x")
    kit.claim(plugin_store, POD.uid, (device, {}))

    err = await _refused(stub, pod_ref, path)

    assert err.code() == code
    assert message in (err.details() or "")
    assert kit.snapshot(lab.node, "nicq") == before
    assert kit.pod_links(pod) == ["lo"]
    assert ctx.store.list_attachments() == []


async def test_a_device_attached_to_another_pod_is_refused(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any, stub: Any
) -> None:
    lab.add_nic("nicf", node_cidr="10.53.0.2/24")
    owner, foreign = lab.add_pod(), lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicf", {}))
    await stub.AttachPod(agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(owner)))
    # A second claim naming the same device, reserved for another pod.
    other = agent_pb2.PodRef(uid="pod-other", namespace="default", name="intruder")
    kit.claim(plugin_store, other.uid, ("nicf", {}), uid="claim-x", name="cx")
    before = kit.snapshot(owner, "nicf")

    err = await _refused(stub, other, lab.path(foreign))

    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "attached to pod default/s-0" in (err.details() or "")
    assert kit.snapshot(owner, "nicf") == before
    assert kit.pod_links(foreign) == ["lo"]
    assert [r.pod_uid for r in ctx.store.list_attachments()] == [POD.uid]


class SlowResolver:
    """Misses the device once, and rescans slowly: an attach outlives a short deadline."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.missed = inner, False

    def find(self, name: str) -> Any:
        if not self.missed:
            self.missed = True
            return None
        return self.inner.find(name)

    async def rescan(self) -> None:
        await asyncio.sleep(0.5)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_an_attach_outliving_its_deadline_still_completes(
    lab: NetLab, ctx: AgentContext, plugin_store: Store, kit: Any, stub: Any
) -> None:
    lab.add_nic("nicw", node_cidr="10.54.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicw", {"interface": {"name": "net1"}}))
    ctx.resolver = SlowResolver(ctx.resolver)
    request = agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AttachPod(request, timeout=0.1)

    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(50):  # the shielded attach carries on without its caller
        rows = ctx.store.list_attachments()
        if rows and rows[0].phase == AttachmentPhase.ATTACHED:
            break
        await asyncio.sleep(0.05)
    assert [r.phase for r in rows] == [AttachmentPhase.ATTACHED]
    resp = await stub.AttachPod(request)
    assert [i.interface_name for i in resp.interfaces] == ["net1"]
    assert kit.pod_links(pod) == ["lo", "net1"]
