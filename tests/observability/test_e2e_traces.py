"""End to end on the node sandbox: the three services export to the OTLP stand-in.

The sandbox runs as `make demo` does (containerd when CI=true, else whatever
runtime can run here), with each service's OTEL_* pointed at the receiver
(the agent, inside the node netns, over the receiver's unix socket) and a
metrics port. Checked: spans from all three services; the NRI RunPodSandbox
span and the agent's attach spans are one trace with correct parent/child
across processes; the attach links to the plugin's prepare span; a failed
attach has an error status naming the step; counters moved on every
endpoint; the readiness of all three.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from dranet_sandbox.node import NodeSandbox, PodStartError, RuntimeChoice
from dranet_sandbox.standins.otlp import OtlpReceiver, Span

from .helpers import Samples, free_port, health, scrape, value

pytestmark = pytest.mark.root
IN_CI = os.environ.get("CI") == "true"
PLUGIN, HOOK, AGENT = "dranet-kubelet-plugin", "dranet-nri-hook", "dranet-netlink-agent"


class ObservedSandbox(NodeSandbox):
    """A NodeSandbox whose services export spans to `receiver` and serve /metrics."""

    def __init__(self, receiver: OtlpReceiver, nics: int, runtime: RuntimeChoice) -> None:
        super().__init__(nics, runtime=runtime)
        self.receiver = receiver
        self.metrics_ports = {name: free_port() for name in ("agent", "hook", "plugin")}

    def _define_services(self) -> None:
        super()._define_services()
        for name, service in self.services.items():
            service.argv.append(f"--metrics-port={self.metrics_ports[name]}")  # last flag wins
            service.env.update(self.receiver.environ(unix=name == "agent"))

    def metrics(self, name: str) -> Samples:
        netns = self.node_netns_path if name == "agent" else None
        return scrape(self.metrics_ports[name], netns)


@pytest.fixture
async def node(receiver: OtlpReceiver) -> AsyncIterator[ObservedSandbox]:
    made = ObservedSandbox(receiver, 2, "containerd" if IN_CI else "auto")
    try:
        await made.start()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"CI=true but the node sandbox could not be set up: {exc}")
        pytest.skip(f"the node sandbox could not be set up: {exc}")
    try:
        yield made
    finally:
        await made.close()


def _chain(receiver: OtlpReceiver, span: Span) -> list[str]:
    return [f"{s.service}: {s.name}" for s in receiver.ancestors(span)]


async def test_a_pod_is_one_trace_across_the_three_services(
    node: ObservedSandbox, receiver: OtlpReceiver
) -> None:
    node.control.create_claim("good", parameters={"interface": {"name": "net1"}})
    pod = await node.start_pod("web", claims=["good"])
    claim_uid = node.control.claim(pod.namespace, "good")["metadata"]["uid"]

    run = await receiver.wait_for_span(
        "nri.RunPodSandbox", service=HOOK, where=lambda s: s.attributes["k8s.pod.uid"] == pod.uid
    )
    attach = await receiver.wait_for_span("attach device", trace_id=run.trace_id)
    tree = receiver.tree(run.trace_id)
    assert attach.service == AGENT, tree
    assert _chain(receiver, attach) == [
        f"{AGENT}: attach pod",
        f"{AGENT}: /dranet.agent.v1.NetlinkAgent/AttachPod",
        f"{HOOK}: /dranet.agent.v1.NetlinkAgent/AttachPod",
        f"{HOOK}: nri.RunPodSandbox",
    ], tree
    assert attach.attributes["dranet.claim.uid"] == claim_uid
    assert attach.attributes["dranet.interface.name"] == "net1"
    # The hook reports the runtime's path, the agent the one it resolved and checked.
    given = str(run.attributes["dranet.netns.path"])
    assert attach.attributes["dranet.netns.path"] == await asyncio.to_thread(
        os.path.realpath, given
    )
    prepare = await receiver.wait_for_span(
        "prepare claim",
        service=PLUGIN,
        where=lambda s: s.attributes["dranet.claim.uid"] == claim_uid,
    )
    assert [(link.trace_id, link.span_id) for link in attach.links] == [
        (prepare.trace_id, prepare.span_id)
    ]
    assert {PLUGIN, HOOK, AGENT} <= receiver.services()
    assert {"get claim", "resolve config", "store claim"} <= {
        s.name for s in receiver.children(prepare)
    }
    await receiver.wait_for_span("publish slices", service=PLUGIN)
    await receiver.wait_for_span(
        "write claim status", where=lambda s: s.attributes["dranet.claim.uid"] == claim_uid
    )

    # -- a failing attach: the gateway is on no subnet of the interface -------------
    routes = [{"destination": "10.199.0.0/16", "gateway": "10.250.0.1"}]
    node.control.create_claim("bad", parameters={"routes": routes})
    with pytest.raises(PodStartError) as caught:
        await node.start_pod("broken", claims=["bad"])
    assert "routes failed" in str(caught.value)
    bad_uid = node.control.claim(pod.namespace, "bad")["metadata"]["uid"]
    failed = await receiver.wait_for_span(
        "attach device", where=lambda s: s.attributes["dranet.claim.uid"] == bad_uid
    )
    assert failed.is_error and "routes failed" in failed.status_message
    assert failed.attributes["dranet.failed_step"] == "routes"
    failed_run = receiver.ancestors(failed)[-1]
    assert (failed_run.service, failed_run.name) == (HOOK, "nri.RunPodSandbox")
    assert failed_run.is_error

    # -- metrics moved; everyone is ready ------------------------------------------
    agent, hook, plugin = (node.metrics(n) for n in ("agent", "hook", "plugin"))
    assert value(agent, "dranet_attach_failures_total", step="routes") == 1
    assert value(agent, "dranet_grpc_server_requests_total",
                 method="/dranet.agent.v1.NetlinkAgent/AttachPod", code="OK") >= 1  # fmt: skip
    assert value(agent, "dranet_store_rows", table="attachments") == 1
    assert value(hook, "dranet_events_total", event="nri.RunPodSandbox", result="ok") >= 1
    assert value(hook, "dranet_events_total", event="nri.RunPodSandbox", result="error") == 1
    assert value(hook, "dranet_nri_connected") == 1
    assert value(plugin, "dranet_published_devices") == 2
    assert value(plugin, "dranet_slice_writes_total", verb="create") >= 1
    for socket in (
        node.paths.agent_socket,
        node.paths.hook_health_socket,
        node.paths.kubelet_root / "plugins" / "dra.net" / "dra.sock",
    ):
        assert health(socket) is None, socket

    await node.stop_pod(pod)
    stop = await receiver.wait_for_span(
        "nri.StopPodSandbox", service=HOOK, where=lambda s: s.attributes["k8s.pod.uid"] == pod.uid
    )
    detach = await receiver.wait_for_span("detach pod", trace_id=stop.trace_id)
    assert detach.service == AGENT
    await receiver.wait_for_span(
        "unprepare claim",
        service=PLUGIN,
        where=lambda s: s.attributes["dranet.claim.uid"] == claim_uid,
    )
    assert value(node.metrics("agent"), "dranet_store_rows", table="attachments") == 0
