"""The netlink agent as a real process (its console script, in a NetLab node netns)
exporting spans over OTLP to the receiver stand-in, and serving /metrics.

The claim row carries a prepare span's W3C carrier (as the kubelet plugin
writes it); the agent's `attach device` span must link to exactly that span.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.grpcserver import unix_channel
from dranet.store import ClaimRecord, PreparedDevice, Role, Store
from dranet_sandbox.netlab import NetLab, ip
from dranet_sandbox.standins.otlp import STATUS_ERROR, OtlpReceiver

from .helpers import Service, agent_service, clean_env, free_port, scrape, value, wait_health

pytestmark = pytest.mark.root
AGENT = "dranet-netlink-agent"
POD = agent_pb2.PodRef(uid="pod-obs-1", namespace="shop", name="web-0")


def prepare_carrier() -> tuple[dict[str, str], str, str]:
    """A prepare span's carrier as the plugin stores it, and its trace and span ids."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return {"traceparent": f"00-{trace_id}-{span_id}-01"}, trace_id, span_id


def write_claim(db: Path, device: str, config: dict[str, Any], carrier: dict[str, str]) -> str:
    uid = f"claim-{secrets.token_hex(4)}"
    with Store(db, role=Role.PLUGIN) as store:
        store.put_claim(
            ClaimRecord(
                uid=uid,
                namespace=POD.namespace,
                name="nic-claim",
                pod_uids=(POD.uid,),
                devices=(PreparedDevice("nic", "node-a", device, config),),
                trace_context=carrier,
            )
        )
    return uid


class Agent:
    def __init__(self, service: Service, socket: Path, metrics_port: int, netns: str) -> None:
        self.service, self.socket, self.metrics_port, self.netns = (
            service, socket, metrics_port, netns,
        )  # fmt: skip

    async def call(self, method: str, request: Any) -> Any:
        async with unix_channel(self.socket) as channel:
            stub = agent_pb2_grpc.NetlinkAgentStub(channel)
            return await getattr(stub, method)(request, timeout=10)

    def metrics(self) -> dict[Any, float]:
        return scrape(self.metrics_port, self.netns)


@pytest.fixture
async def agent(lab: NetLab, sockdir: Path, receiver: OtlpReceiver) -> AsyncIterator[Agent]:
    port = free_port()
    env = clean_env({**receiver.environ(unix=True), "POD_NAME": "dranet-abcde"})
    service = agent_service(lab, sockdir, env, f"--metrics-port={port}", "--node-name=node-a")
    # The store exists before the agent, as in the pod (the plugin creates it too).
    Store(sockdir / "state.db", role=Role.PLUGIN).close()
    await service.start()
    made = Agent(service, sockdir / "agent" / "agent.sock", port, lab.path(lab.node))
    try:
        await wait_health(made.socket, serving=True, service=service)
        yield made
    finally:
        code = await service.stop()
        assert code == 0, service.output()


async def test_attach_steps_are_spans_linked_to_prepare(
    lab: NetLab, sockdir: Path, agent: Agent, receiver: OtlpReceiver
) -> None:
    lab.add_nic("obs1", node_cidr="10.61.0.2/24", fabric_cidr="10.61.0.1/24")
    ip("route", "add", "10.161.0.0/16", "via", "10.61.0.1", netns=lab.node)
    pod = lab.add_pod()
    carrier, prepare_trace, prepare_span = prepare_carrier()
    config = {"interface": {"name": "net1"}, "ethtool": {"features": {"rx-gro-list": True}}}
    claim_uid = write_claim(sockdir / "state.db", "obs1", config, carrier)
    before = agent.metrics()

    reply = await agent.call(
        "AttachPod", agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod))
    )
    assert [i.interface_name for i in reply.interfaces] == ["net1"]

    device = await receiver.wait_for_span("attach device", service=AGENT)
    assert device.resource["k8s.node.name"] == "node-a"
    assert device.resource["k8s.pod.name"] == "dranet-abcde"
    assert device.resource["k8s.container.name"] == "netlink-agent"
    assert {
        "k8s.pod.uid": POD.uid, "k8s.pod.name": POD.name, "k8s.namespace.name": POD.namespace,
        "dranet.claim.uid": claim_uid, "dranet.device": "obs1",
        "dranet.interface.name": "net1", "dranet.netns.path": lab.path(pod),
    }.items() <= dict(device.attributes).items()  # fmt: skip
    assert [(link.trace_id, link.span_id) for link in device.links] == [
        (prepare_trace, prepare_span)
    ]
    assert device.trace_id != prepare_trace  # a link, not a parent: minutes apart
    # Parent chain inside the agent: gRPC server span -> attach pod -> attach device.
    pod_span = receiver.parent(device)
    assert pod_span is not None and pod_span.name == "attach pod"
    server = receiver.parent(pod_span)
    assert server is not None and server.name == "/dranet.agent.v1.NetlinkAgent/AttachPod"
    await receiver.wait_for(
        lambda r: len(r.children(device)) >= 6, what="the attach steps under attach device"
    )
    steps = {s.attributes["dranet.step"] for s in receiver.children(device)}
    assert {"record host state", "move into pod", "addresses", "link up", "routes",
            "rules", "ethtool"} <= steps  # fmt: skip
    assert not any(s.is_error for s in receiver.trace(device.trace_id))

    after = agent.metrics()
    method = "/dranet.agent.v1.NetlinkAgent/AttachPod"
    ok = "dranet_grpc_server_requests_total"
    assert (
        value(after, ok, method=method, code="OK")
        == value(before, ok, method=method, code="OK") + 1
    )
    assert value(after, "dranet_store_rows", table="attachments") == 1
    assert value(after, "dranet_store_rows", table="claims") == 1

    await agent.call("DetachPod", agent_pb2.DetachPodRequest(pod=POD))
    give_back = await receiver.wait_for_span("give back device", service=AGENT)
    assert give_back.attributes["dranet.claim.uid"] == claim_uid
    assert receiver.parent(give_back) is not None
    assert receiver.parent(give_back).name == "detach pod"  # type: ignore[union-attr]
    await receiver.wait_for(
        lambda r: (
            {"move back to node", "restore on node"}
            <= {s.attributes.get("dranet.step") for s in r.children(give_back)}
        ),
        what="move back and restore steps",
    )
    assert value(agent.metrics(), "dranet_store_rows", table="attachments") == 0


async def test_failed_attach_names_the_step_on_the_span(
    lab: NetLab, sockdir: Path, agent: Agent, receiver: OtlpReceiver
) -> None:
    lab.add_nic("obs2", node_cidr="10.62.0.2/24", fabric_cidr="10.62.0.1/24")
    pod = lab.add_pod()
    carrier, prepare_trace, _ = prepare_carrier()
    # The gateway is on no subnet of the interface: the kernel refuses the route.
    config = {"routes": [{"destination": "10.199.0.0/16", "gateway": "10.250.0.1"}]}
    write_claim(sockdir / "state.db", "obs2", config, carrier)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await agent.call("AttachPod", agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod)))
    assert "routes failed for device obs2" in (caught.value.details() or "")

    device = await receiver.wait_for_span("attach device", service=AGENT)
    assert device.is_error
    assert "routes failed for device obs2" in device.status_message
    assert device.attributes["dranet.failed_step"] == "routes"
    assert [link.trace_id for link in device.links] == [prepare_trace]
    (routes,) = [s for s in receiver.children(device) if s.name == "step routes"]
    assert routes.is_error and routes.status_code == STATUS_ERROR
    assert routes.exceptions and "NetworkStepError" in routes.exceptions[0]["exception.type"]
    # The rollback ran and is a span of the same attach.
    rollback = await receiver.wait_for_span("rollback", service=AGENT)
    assert rollback.trace_id == device.trace_id and not rollback.is_error
    pod_span = receiver.parent(device)
    assert pod_span is not None and pod_span.is_error

    samples = agent.metrics()
    assert value(samples, "dranet_attach_failures_total", step="routes") == 1
    method = "/dranet.agent.v1.NetlinkAgent/AttachPod"
    assert value(samples, "dranet_grpc_server_requests_total", method=method, code="INTERNAL") == 1
    assert value(samples, "dranet_store_rows", table="attachments") == 0
