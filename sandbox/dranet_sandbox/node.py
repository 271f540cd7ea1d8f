"""The node sandbox: one Kubernetes node running dranet, on a machine with no cluster.

    async with NodeSandbox(nics=2) as node:            # needs root
        node.control.create_claim("c1", parameters={"interface": {"name": "net1"}})
        pod = await node.start_pod("web", claims=["c1"])
        node.pod_ip_json(pod, "addr", "show", "dev", "net1")
        assert node.ping(pod, node.nics[0].fabric_ip)
        await node.stop_pod(pod)

What it builds (everything in namespaces and a temp dir it creates, all
removed by `close()`, also after a failure or a cancellation):

- a NetLab: node netns `<prefix>-node` with `nics` veth NICs `eth1..ethN`
  (node side 10.200.<i>.2/24 plus a route 10.210.<i>.0/24 via the peer, so a
  restore has something to restore) whose peers sit in `<prefix>-fabric` as
  10.200.<i>.1/24;
- the API server stand-in (a Node object, a kubeconfig) and `control`
  (`ControlPlane`: DeviceClass `dranet`, claims, the allocator);
- the container runtime (`podruntime`): a real containerd 1.7 with NRI in
  the node netns, or - when it cannot be set up and `runtime="auto"` - the
  NRI stand-in with NetLab pod namespaces; `runtime_info` says which, and
  `runtime_note` why;
- the three services as real processes (`processes`), with DaemonSet
  flags: agent inside the node netns (`ip netns exec`), plugin and hook in
  the machine's netns (they only use unix sockets and 127.0.0.1);
- the kubelet stand-in (registration, prepare/unprepare); pods through
  the runtime.

A pod's life, step by step (`start_pod`/`stop_pod` do all of it; the steps
are public so scenarios can put things in between, e.g. restart a service):
`new_pod` -> `allocate` -> `prepare` -> `run_sandbox` ... `stop_sandbox` ->
`remove_sandbox` -> `unprepare` -> `deallocate`. A failed step raises
`PodStartError` naming the stage. Timings (ms) land in `pod.timings`.

The rest of the surface, for scenarios:

- attributes: `lab` (NetLab; `lab.node`, `lab.fabric` netns names), `api`
  (FakeApiServer), `control`, `kubelet` (KubeletStandin), `runtime`,
  `services` ("agent", "hook", "plugin" -> ServiceProcess, logs in
  `paths.logs`), `paths` (SandboxPaths), `nics` (NodeNic), `pods` (live
  pods by UID), `node_name` (also the pool name);
- services: `start_service(name)` (waits until ready: agent SERVING,
  hook connected to the runtime, plugin registered with the kubelet),
  `stop_service(name)` (SIGTERM), `restart_service(name)`;
- inspection: `pod_exec`, `pod_ip_json`, `ping` (pod -> address),
  `fabric_ping` (fabric -> address), `node_ip_json`, `nic_snapshot`
  (`ip -j -d` link/addr/route minus VOLATILE, None when the NIC is not on
  the node), `wait_claim_status`, `wait_published`, `runtime.pod_uids()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dranet.errors import DranetError, PeerError
from dranet.grpcserver import unix_channel
from dranet_sandbox.controlplane import ControlPlane, PodRef
from dranet_sandbox.cri import PodSpec
from dranet_sandbox.netlab import NetLab, ip, ip_json
from dranet_sandbox.netview import VOLATILE, in_netns, nic_snapshot
from dranet_sandbox.podruntime import (
    ContainerdRuntime,
    PodRuntime,
    PodStartError,
    StandinRuntime,
)
from dranet_sandbox.processes import (
    DRIVER,
    SandboxPaths,
    ServiceProcess,
    agent_argv,
    hook_argv,
    plugin_argv,
)
from dranet_sandbox.standins.apiserver import FakeApiServer
from dranet_sandbox.standins.kubelet import Claim, ClaimResult, KubeletStandin
from dranet_sandbox.teardown import write_state

__all__ = [
    "VOLATILE",
    "NodeNic",
    "NodeSandbox",
    "Pod",
    "PodStartError",
    "RuntimeChoice",
    "in_netns",
    "nic_snapshot",
]
log = logging.getLogger(__name__)
RuntimeChoice = Literal["auto", "containerd", "stand-in"]
SERVICES = ("agent", "hook", "plugin")


@dataclass(frozen=True)
class NodeNic:
    """One of the node's NICs and its fabric peer."""

    name: str
    node_cidr: str
    fabric_cidr: str
    peer: str
    routed: str  # a subnet the node routes via the peer

    @property
    def fabric_ip(self) -> str:
        return self.fabric_cidr.split("/")[0]


@dataclass
class Pod:
    name: str
    namespace: str
    uid: str
    claims: tuple[str, ...]
    sandbox_id: str = ""
    netns: str = ""
    prepared: dict[str, ClaimResult] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.uid)


async def run_to_end(func: Callable[[], object]) -> None:
    """Runs blocking `func` in a thread; a cancellation waits for it to finish first,
    so what it created is known to the clean-up."""
    task = asyncio.ensure_future(asyncio.to_thread(func))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


async def to_completion(step: Coroutine[Any, Any, None]) -> None:
    """Awaits `step` to its end even if we are cancelled meanwhile (clean-up must
    finish: a half-done one leaks namespaces and daemons), then re-raises the
    cancellation."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and not cancelled:
                raise
            cancelled = True
            log.warning("interrupted during clean-up: finishing the clean-up first")
    task.result()
    if cancelled:
        raise asyncio.CancelledError


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


class NodeSandbox:
    """See the module docstring. Use `async with`, or `start()` then `close()`."""

    def __init__(
        self,
        nics: int = 1,
        *,
        runtime: RuntimeChoice = "auto",
        log_level: str = "info",
        namespace: str = "default",
    ) -> None:
        if not 1 <= nics <= 50:
            raise ValueError(f"nics={nics}: use 1 to 50")
        self.nic_count = nics
        self.runtime_choice: RuntimeChoice = runtime
        self.log_level = log_level
        self.namespace = namespace  # of the pods and claims
        self.lab = NetLab()
        self.node_name = f"{self.lab.prefix}-node"
        self.paths = SandboxPaths(Path(tempfile.mkdtemp(prefix="dranet-sbx-", dir="/tmp")))
        self.api = FakeApiServer()
        self.control = ControlPlane(self.api, self.node_name)
        self.kubelet = KubeletStandin(self.paths.kubelet_root)
        self.nics: list[NodeNic] = []
        self.runtime: PodRuntime | None = None
        self.runtime_note = ""
        self.services: dict[str, ServiceProcess] = {}
        self.pods: dict[str, Pod] = {}  # by uid, until stop_pod
        self._api_started = False
        self._kubelet_started = False

    # --- set-up and tear-down ------------------------------------------------------

    async def __aenter__(self) -> NodeSandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def runtime_info(self) -> str:
        return self.runtime.description if self.runtime is not None else "none"

    @property
    def node_netns_path(self) -> str:
        return self.lab.path(self.lab.node)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await to_completion(self.close())
            raise

    async def _start(self) -> None:
        self.paths.make()
        await run_to_end(self._make_network)
        self.api.start()
        self._api_started = True
        self.api.add_node(self.node_name)
        self.api.write_kubeconfig(self.paths.kubeconfig)
        self.control.create_device_class()
        await self._start_runtime()
        self.save_state()
        self._define_services()
        await self.start_service("agent")
        await self.start_service("hook")
        await self.kubelet.start()
        self._kubelet_started = True
        await self.start_service("plugin")
        await self.wait_published([n.name for n in self.nics])

    def _make_network(self) -> None:
        self.lab.open()
        for i in range(1, self.nic_count + 1):
            nic = self.lab.add_nic(
                f"eth{i}", node_cidr=f"10.200.{i}.2/24", fabric_cidr=f"10.200.{i}.1/24"
            )
            routed = f"10.210.{i}.0/24"
            ip("route", "add", routed, "via", f"10.200.{i}.1", netns=self.lab.node)
            self.nics.append(NodeNic(nic.name, f"10.200.{i}.2/24", f"10.200.{i}.1/24",
                                     nic.peer, routed))  # fmt: skip

    async def _start_runtime(self) -> None:
        """Sets self.runtime before starting it, so close() stops it whatever happens."""
        base = self.paths.runtime_dir
        if self.runtime_choice != "stand-in":
            self.runtime = ContainerdRuntime(base=base, netns=self.node_netns_path)
            try:
                await self.runtime.start()
                return
            except Exception as exc:
                self.runtime = None  # a failed start cleaned up after itself
                if self.runtime_choice == "containerd":
                    raise
                self.runtime_note = f"containerd could not be set up: {exc}"
                log.warning("%s; using the NRI runtime stand-in instead", self.runtime_note)
        else:
            self.runtime_note = "the NRI runtime stand-in was asked for"
        base.mkdir(parents=True, exist_ok=True)
        self.runtime = StandinRuntime(base=base, lab=self.lab, reason=self.runtime_note)
        await self.runtime.start()

    def _define_services(self) -> None:
        assert self.runtime is not None
        ignore = ["veth*"]  # the CNI bridge's host-side veths (our NICs are eth*)
        if isinstance(self.runtime, ContainerdRuntime):
            ignore.insert(0, self.runtime.ignore_bridge)
        argv = {
            "agent": agent_argv(
                self.paths, self.lab.node, tuple(ignore), self.node_name, self.log_level
            ),
            "hook": hook_argv(self.paths, self.runtime.nri_socket, self.node_name, self.log_level),
            "plugin": plugin_argv(self.paths, self.node_name, self.log_level),
        }
        for name in SERVICES:
            self.services[name] = ServiceProcess(name, argv[name], self.paths.logs / f"{name}.log")

    async def start_service(self, name: str, timeout: float = 20) -> ServiceProcess:
        """Starts one service ("agent", "hook" or "plugin") and waits until it is ready."""
        service = self.services[name]
        mark = self._readiness_mark(name)
        await service.start()
        self.save_state()
        try:
            async with asyncio.timeout(timeout):
                await self._wait_ready(service, mark)
        except TimeoutError:
            raise PeerError(
                f"{name} was not ready after {timeout}s; its log:\n{service.log_text()}",
                hint=f"see {service.log_path}",
            ) from None
        return service

    def _readiness_mark(self, name: str) -> int:
        """How many times the peer saw this service ready so far (a restart must add one)."""
        assert self.runtime is not None
        if name == "hook":
            return self.runtime.hook_connections()
        if name == "plugin":
            return sum(1 for a in self.kubelet.attempts if a.registered and a.name == DRIVER)
        return 0

    async def _wait_ready(self, service: ServiceProcess, mark: int) -> None:
        assert self.runtime is not None
        if service.name == "agent":
            await self._wait_serving(service)
        elif service.name == "hook":
            await self.runtime.wait_hook_ready(service, mark)
        else:  # the kubelet stand-in registered the (new) plugin
            while self._readiness_mark("plugin") <= mark:
                service.check_alive()
                await asyncio.sleep(0.05)

    def save_state(self) -> None:
        """Records pids, namespaces and dirs for `teardown` (if this process dies)."""
        daemon = self.runtime.daemon if isinstance(self.runtime, ContainerdRuntime) else None
        containerd = None
        if daemon is not None and daemon.proc is not None:
            containerd = {
                "pid": daemon.proc.pid,
                "base": str(daemon.base),
                "cri_socket": str(daemon.cri_socket),
            }
        write_state(
            self.paths.base,
            {
                "owner_pid": os.getpid(),
                "prefix": self.lab.prefix,
                "node_netns": self.lab.node,
                "fabric_netns": self.lab.fabric,
                "runtime": self.runtime_info,
                "containerd": containerd,
                "services": {n: s.pid for n, s in self.services.items() if s.running},
            },
        )

    async def stop_service(self, name: str) -> int | None:
        """SIGTERM (then SIGKILL); for the plugin, also waits for the kubelet to see it gone."""
        code = await self.services[name].stop()
        if name == "plugin" and self._kubelet_started:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.kubelet.wait_deregistered(DRIVER)
        return code

    async def restart_service(self, name: str) -> ServiceProcess:
        await self.stop_service(name)
        return await self.start_service(name)

    async def _wait_serving(self, service: ServiceProcess) -> None:
        socket = self.paths.agent_socket
        while True:
            service.check_alive()
            if socket.exists():
                async with unix_channel(socket) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    try:
                        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            return
                    except grpc.aio.AioRpcError:
                        pass
            await asyncio.sleep(0.05)

    async def wait_published(self, devices: list[str], timeout: float = 20) -> None:
        """Waits until this node's ResourceSlices hold (at least) `devices`."""
        deadline = time.monotonic() + timeout
        while not set(devices) <= set(self.control.published_devices()):
            self.services["plugin"].check_alive()
            if time.monotonic() > deadline:
                raise PeerError(
                    f"devices {devices} not published within {timeout}s "
                    f"(published: {self.control.published_devices()}):\n"
                    f"{self.services['plugin'].log_text()}\n{self.services['agent'].log_text()}"
                )
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Stops pods (NICs go home while the services still run), services, runtime, netns.

        Runs to its end even when cancelled (then re-raises the cancellation)."""
        await to_completion(self._close())

    async def _close(self) -> None:
        for pod in list(self.pods.values()):
            await self._best_effort(f"stop pod {pod.name}", self.stop_pod(pod))
        for name in reversed(SERVICES):
            if name in self.services:
                await self._best_effort(f"stop {name}", self.services[name].stop())
        if self._kubelet_started:
            await self._best_effort("stop the kubelet stand-in", self.kubelet.stop())
            self._kubelet_started = False
        if self.runtime is not None:
            await self._best_effort("stop the runtime", self.runtime.stop())
            self.runtime = None
        if self._api_started:
            self.api.stop()
            self._api_started = False
        await asyncio.to_thread(self.lab.close)
        await asyncio.to_thread(shutil.rmtree, self.paths.base, True)

    async def _best_effort(self, what: str, step: Any) -> None:
        try:
            await step
        except Exception as exc:
            log.warning("clean-up: %s failed: %s", what, exc)

    # --- pods ------------------------------------------------------------------------

    def new_pod(self, name: str, claims: list[str] | tuple[str, ...] = ()) -> Pod:
        pod = Pod(name, self.namespace, str(uuid.uuid4()), tuple(claims))
        self.pods[pod.uid] = pod
        return pod

    def allocate(self, pod: Pod) -> None:
        for claim in pod.claims:
            try:
                self.control.allocate(pod.namespace, claim, pod.ref)
            except DranetError as exc:
                raise PodStartError("allocate", pod.name, str(exc)) from exc

    def _claim_refs(self, pod: Pod) -> list[Claim]:
        refs = []
        for name in pod.claims:
            uid = self.control.claim(pod.namespace, name)["metadata"]["uid"]
            refs.append(Claim(pod.namespace, name, uid))
        return refs

    async def prepare(self, pod: Pod) -> dict[str, ClaimResult]:
        """NodePrepareResources; any per-claim error -> PodStartError("prepare")."""
        started = time.monotonic()
        try:
            results = await self.kubelet.prepare(self._claim_refs(pod), driver=DRIVER)
        except DranetError as exc:  # the plugin is down or broke the kubelet's rules
            raise PodStartError("prepare", pod.name, str(exc)) from exc
        pod.timings["prepare"] = _ms(started)
        errors = [f"{uid}: {r.error}" for uid, r in results.items() if r.error]
        if errors:
            raise PodStartError("prepare", pod.name, "; ".join(errors))
        pod.prepared = results
        return results

    async def run_sandbox(self, pod: Pod) -> None:
        assert self.runtime is not None
        started = time.monotonic()
        spec = PodSpec(pod.name, pod.namespace, pod.uid)
        pod.sandbox_id, pod.netns = await self.runtime.run_pod(spec)
        pod.timings["attach"] = _ms(started)

    async def stop_sandbox(self, pod: Pod) -> None:
        assert self.runtime is not None
        if pod.sandbox_id:
            started = time.monotonic()
            await self.runtime.stop_pod(pod.sandbox_id)
            pod.timings["detach"] = _ms(started)

    async def remove_sandbox(self, pod: Pod) -> None:
        assert self.runtime is not None
        if pod.sandbox_id:
            await self.runtime.remove_pod(pod.sandbox_id)
            pod.sandbox_id = ""

    async def unprepare(self, pod: Pod) -> dict[str, str]:
        refs = self._claim_refs_or_recorded(pod)
        return await self.kubelet.unprepare(refs, driver=DRIVER) if refs else {}

    def _claim_refs_or_recorded(self, pod: Pod) -> list[Claim]:
        try:
            return self._claim_refs(pod)
        except PeerError:  # a claim deleted meanwhile: unprepare only what we prepared
            return [Claim(pod.namespace, "", uid) for uid in pod.prepared]

    def deallocate(self, pod: Pod) -> None:
        for claim in pod.claims:
            self.control.deallocate(pod.namespace, claim)

    async def start_pod(self, name: str, claims: list[str] | tuple[str, ...] = ()) -> Pod:
        """allocate -> prepare -> RunPodSandbox. On failure the pod is cleaned up again."""
        pod = self.new_pod(name, claims)
        try:
            self.allocate(pod)
            await self.prepare(pod)
            await self.run_sandbox(pod)
        except BaseException:
            await to_completion(self.stop_pod(pod))
            raise
        return pod

    async def stop_pod(self, pod: Pod) -> None:
        """StopPodSandbox, RemovePodSandbox, unprepare, deallocate (each best effort)."""
        self.pods.pop(pod.uid, None)
        await self._best_effort(f"StopPodSandbox {pod.name}", self.stop_sandbox(pod))
        await self._best_effort(f"RemovePodSandbox {pod.name}", self.remove_sandbox(pod))
        if self._kubelet_started and self.kubelet.plugins.get(DRIVER):
            await self._best_effort(f"unprepare {pod.name}", self.unprepare(pod))
        with contextlib.suppress(Exception):
            self.deallocate(pod)

    # --- inspection --------------------------------------------------------------------

    def pod_exec(self, pod: Pod, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if not pod.netns:
            raise PeerError(f"pod {pod.name} has no sandbox")
        return in_netns(pod.netns, *cmd, check=check)

    def pod_ip_json(self, pod: Pod, *args: str) -> list[dict[str, Any]]:
        out = self.pod_exec(pod, "ip", "-j", *args).stdout.strip()
        return list(json.loads(out)) if out else []

    def ping(self, pod: Pod, address: str, count: int = 1, wait: float = 2) -> bool:
        done = self.pod_exec(pod, "ping", "-c", str(count), "-W", str(wait), address, check=False)
        return done.returncode == 0

    def node_ip_json(self, *args: str) -> list[dict[str, Any]]:
        return ip_json(*args, netns=self.lab.node)

    def fabric_ping(self, address: str) -> bool:
        """Ping from the fabric netns (e.g. to a pod's net1 address)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.lab.fabric, "ping", "-c", "1", "-W", "2", address],
            check=False, capture_output=True,
        )  # fmt: skip
        return done.returncode == 0

    def nic_snapshot(self, ifname: str) -> dict[str, Any] | None:
        return nic_snapshot(self.lab.node, ifname)

    async def settled_snapshot(
        self, ifname: str, like: dict[str, Any] | None, *, timeout: float = 5
    ) -> dict[str, Any] | None:
        """The NIC's snapshot once it equals `like`, or the last one after `timeout`.

        The kernel finishes some state on its own after a restore: an IPv6
        link-local address gets its local-table route only once duplicate
        address detection is over (about a second on veth).
        """
        deadline = time.monotonic() + timeout
        while True:
            snap = self.nic_snapshot(ifname)
            if snap == like or time.monotonic() > deadline:
                return snap
            await asyncio.sleep(0.1)

    async def wait_claim_status(
        self, claim: str, *, count: int = 1, timeout: float = 10
    ) -> list[dict[str, Any]]:
        """Waits until the claim's status.devices has `count` entries (0: cleared)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.control.claim(self.namespace, claim).get("status") or {}
            devices = list(status.get("devices") or [])
            if len(devices) == count:
                return devices
            if time.monotonic() > deadline:
                raise PeerError(
                    f"claim {claim}: status.devices has {len(devices)} entries, "
                    f"expected {count} after {timeout}s:\n{self.services['plugin'].log_text()}"
                )
            await asyncio.sleep(0.1)
