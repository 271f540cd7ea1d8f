"""One pod's life through the three real service processes, without the node sandbox.

The agent runs in a NetLab node netns; the plugin talks to the API server and
kubelet stand-ins; the hook to the NRI runtime stand-in. All three export
spans to the OTLP receiver stand-in and serve /metrics. Checked: the kubelet's
traceparent is honoured by the plugin; RunPodSandbox (hook) and the attach
(agent) are one trace with correct parent/child across processes; the attach
links to the prepare span; counters moved; readiness follows registration
(plugin) and the runtime connection (hook).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dranet.store import Role, Store
from dranet_sandbox.netlab import NetLab
from dranet_sandbox.standins.apiserver import FakeApiServer, iter_slices
from dranet_sandbox.standins.kubelet import Claim, KubeletStandin
from dranet_sandbox.standins.otlp import OtlpReceiver, Span
from dranet_sandbox.standins.runtime import RuntimeStandIn, make_pod

from .helpers import (
    BIN,
    Service,
    agent_service,
    clean_env,
    free_port,
    health,
    scrape,
    value,
    wait_health,
)

pytestmark = pytest.mark.root
DRIVER, NODE = "dra.net", "obs-node"
OPAQUE = {"driver": DRIVER, "parameters": {"interface": {"name": "net1"}}}
PLUGIN, HOOK, AGENT = "dranet-kubelet-plugin", "dranet-nri-hook", "dranet-netlink-agent"


@dataclass
class Node:
    lab: NetLab
    sockdir: Path
    api: FakeApiServer
    receiver: OtlpReceiver
    agent: Service
    plugin: Service
    plugin_port: int
    dra_socket: Path
    hook_port: int = 0
    hook_health: Path = Path()

    def hook(self, env: dict[str, str]) -> Service:
        self.hook_port = free_port()
        self.hook_health = self.sockdir / "hook" / "health.sock"
        argv = [str(BIN / "dranet-nri-hook"),
                f"--nri-socket={self.sockdir / 'nri.sock'}",
                f"--agent-socket={self.sockdir / 'agent' / 'agent.sock'}",
                f"--health-socket={self.hook_health}",
                f"--metrics-port={self.hook_port}",
                "--max-backoff=0.3", "--log-level=debug"]  # fmt: skip
        return Service("hook", argv, env, self.sockdir / "hook.log")


def allocated_claim(name: str, uid: str, pod_uid: str, device: str) -> dict[str, Any]:
    """A ResourceClaim as the scheduler leaves it: one device of ours, reserved for one pod."""
    result = {"request": "nic", "driver": DRIVER, "pool": NODE, "device": device}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "shop", "uid": uid},
        "spec": {"devices": {"requests": [{"name": "nic"}]}},
        "status": {
            "allocation": {
                "devices": {
                    "results": [result],
                    "config": [{"source": "FromClaim", "opaque": OPAQUE}],
                }
            },
            "reservedFor": [{"resource": "pods", "name": "web-0", "uid": pod_uid}],
        },
    }


@pytest.fixture
async def node(lab: NetLab, sockdir: Path, receiver: OtlpReceiver) -> AsyncIterator[Node]:
    lab.add_nic("obsx", node_cidr="10.63.0.2/24", fabric_cidr="10.63.0.1/24")
    Store(sockdir / "state.db", role=Role.PLUGIN).close()
    agent = agent_service(
        lab, sockdir, clean_env(receiver.environ(unix=True)), f"--node-name={NODE}"
    )
    with FakeApiServer() as api:
        api.add_node(NODE)
        kubeconfig = api.write_kubeconfig(sockdir / "kubeconfig")
        plugin_port = free_port()
        plugin = Service(
            "plugin",
            [str(BIN / "dranet-kubelet-plugin"), f"--driver-name={DRIVER}",
             f"--node-name={NODE}", f"--kubelet-root-dir={sockdir / 'kubelet'}",
             f"--agent-socket={sockdir / 'agent' / 'agent.sock'}",
             f"--state-db={sockdir / 'state.db'}", f"--kubeconfig={kubeconfig}",
             "--filter=", f"--metrics-port={plugin_port}", "--log-level=debug"],
            clean_env(receiver.environ()),
            sockdir / "plugin.log",
        )  # fmt: skip
        made = Node(lab, sockdir, api, receiver, agent, plugin, plugin_port,
                    sockdir / "kubelet" / "plugins" / DRIVER / "dra.sock")  # fmt: skip
        try:
            await agent.start()
            await wait_health(sockdir / "agent" / "agent.sock", serving=True, service=agent)
            yield made
        finally:
            for service in (plugin, agent):
                assert await service.stop() == 0, service.output()


async def _until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.1)


def _ancestors(receiver: OtlpReceiver, span: Span) -> list[str]:
    return [f"{s.service}: {s.name}" for s in receiver.ancestors(span)]


async def test_one_pod_one_trace_across_processes(node: Node, receiver: OtlpReceiver) -> None:
    # -- the plugin: NOT_SERVING until the kubelet has registered it ------------------
    await node.plugin.start()
    await _until(node.dra_socket.exists, "the DRA socket")
    await asyncio.sleep(0.3)
    problem = health(node.dra_socket)
    assert problem is not None and "NOT_SERVING" in problem, problem
    async with KubeletStandin(node.sockdir / "kubelet") as kubelet:
        async with asyncio.timeout(20):
            await kubelet.wait_registered(DRIVER)
        await wait_health(node.dra_socket, serving=True, service=node.plugin)
        await _until(lambda: any(iter_slices(node.api, DRIVER, NODE)), "a ResourceSlice")

        # -- prepare, with the kubelet's own traceparent -------------------------------
        pod_uid, claim_uid = f"pod-{secrets.token_hex(4)}", f"uid-{secrets.token_hex(4)}"
        node.api.put("resourceclaims", allocated_claim("nic-claim", claim_uid, pod_uid, "obsx"))
        kubelet_trace, kubelet_span = secrets.token_hex(16), secrets.token_hex(8)
        results = await kubelet.prepare(
            [Claim("shop", "nic-claim", claim_uid)],
            driver=DRIVER,
            traceparent=f"00-{kubelet_trace}-{kubelet_span}-01",
        )
        assert not results[claim_uid].error, results

        prepare = await receiver.wait_for_span("prepare claim", service=PLUGIN)
        assert prepare.trace_id == kubelet_trace  # the kubelet's trace is continued
        server = receiver.parent(prepare)
        assert server is not None and server.name.endswith("/NodePrepareResources")
        assert server.parent_span_id == kubelet_span
        assert prepare.attributes["dranet.claim.uid"] == claim_uid
        assert prepare.attributes["k8s.pod.uid"] == pod_uid
        await receiver.wait_for(
            lambda r: (
                {"get claim", "resolve config", "store claim"}
                <= {s.name for s in r.children(prepare)}
            ),
            what="prepare's child spans",
        )

        # -- the hook: NOT_SERVING until registered with the runtime -------------------
        hook = await node.hook(clean_env(receiver.environ())).start()
        runtime = RuntimeStandIn(node.sockdir / "nri.sock", style="new")
        try:
            await _until(node.hook_health.exists, "the hook's health socket")
            assert health(node.hook_health) is not None
            await runtime.start()
            await runtime.wait_for_plugin(timeout=20)
            await wait_health(node.hook_health, serving=True, service=hook)

            pod_ns = node.lab.add_pod()
            sandbox = make_pod(pod_uid, name="web-0", namespace="shop", netns=node.lab.path(pod_ns))
            outcomes = await runtime.run_pod_sandbox(sandbox)
            assert [o.result for o in outcomes] == ["ok"]

            run = await receiver.wait_for_span("nri.RunPodSandbox", service=HOOK)
            attach = await receiver.wait_for_span("attach device", service=AGENT)
            assert attach.trace_id == run.trace_id, receiver.tree(run.trace_id)
            chain = _ancestors(receiver, attach)
            assert chain == [
                f"{AGENT}: attach pod",
                f"{AGENT}: /dranet.agent.v1.NetlinkAgent/AttachPod",
                f"{HOOK}: /dranet.agent.v1.NetlinkAgent/AttachPod",
                f"{HOOK}: nri.RunPodSandbox",
            ], receiver.tree(run.trace_id)
            assert [(link.trace_id, link.span_id) for link in attach.links] == [
                (prepare.trace_id, prepare.span_id)
            ]
            assert run.attributes["k8s.pod.uid"] == pod_uid
            assert run.attributes["dranet.netns.path"] == node.lab.path(pod_ns)
            status = await receiver.wait_for_span("write claim status", service=PLUGIN)
            assert status.attributes["dranet.claim.uid"] == claim_uid
            await receiver.wait_for_span("publish slices", service=PLUGIN)

            # -- metrics moved -------------------------------------------------------
            hook_samples = scrape(node.hook_port)
            assert value(hook_samples, "dranet_events_total", event="nri.RunPodSandbox",
                         result="ok") == 1  # fmt: skip
            assert value(hook_samples, "dranet_nri_connected") == 1
            plugin_samples = scrape(node.plugin_port)
            method = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
            assert value(plugin_samples, "dranet_grpc_server_requests_total",
                         method=method, code="OK") == 1  # fmt: skip
            assert value(plugin_samples, "dranet_slice_writes_total", verb="create") >= 1
            assert value(plugin_samples, "dranet_published_devices") >= 1
            assert value(plugin_samples, "dranet_store_rows", table="claims") == 1
            await _until(
                lambda: value(scrape(node.plugin_port), "dranet_claim_status_writes_total") >= 1,
                "a claim status write",
            )

            # -- the runtime goes away: the hook is no longer ready; back: ready -----
            await runtime.stop()
            await wait_health(node.hook_health, serving=False, service=hook)
            assert value(scrape(node.hook_port), "dranet_nri_connected") == 0
            runtime = RuntimeStandIn(node.sockdir / "nri.sock", style="new")
            runtime.pods[sandbox.id] = sandbox  # still running: Synchronize keeps it
            await runtime.start()
            await runtime.wait_for_plugin(timeout=20)
            await wait_health(node.hook_health, serving=True, service=hook)
            assert value(scrape(node.hook_port), "dranet_nri_reconnects_total") == 1

            await runtime.stop_pod_sandbox(sandbox)
            stop = await receiver.wait_for_span("nri.StopPodSandbox", service=HOOK)
            detach = await receiver.wait_for_span("detach pod", trace_id=stop.trace_id)
            assert detach.service == AGENT
            assert [s.name for s in receiver.children(detach)] == ["give back device"]
        finally:
            await runtime.stop()
            assert await hook.stop() == 0, hook.output()
        assert not hook.log.read_text().count("Traceback"), hook.output()
