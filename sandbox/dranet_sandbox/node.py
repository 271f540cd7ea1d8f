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

This module holds the set-up and tear-down; `NodeSandbox` takes the rest
from its parts: `podsteps` (`Pod` and the pod-lifecycle steps),
`servicecontrol` (starting, stopping and readiness of the services) and
`inspection` (the inspection helpers). `cleanup` has the helpers that let
set-up and clean-up run to their end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dranet_sandbox.cleanup import best_effort, run_to_end, to_completion
from dranet_sandbox.controlplane import ControlPlane
from dranet_sandbox.inspection import Inspection
from dranet_sandbox.netlab import NetLab, ip
from dranet_sandbox.netview import VOLATILE, in_netns, nic_snapshot
from dranet_sandbox.podruntime import (
    ContainerdRuntime,
    PodRuntime,
    PodStartError,
    StandinRuntime,
)
from dranet_sandbox.podsteps import Pod, PodSteps
from dranet_sandbox.processes import SandboxPaths, ServiceProcess
from dranet_sandbox.servicecontrol import SERVICES, ServiceControl
from dranet_sandbox.standins.apiserver import FakeApiServer
from dranet_sandbox.standins.kubelet import KubeletStandin
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


class NodeSandbox(PodSteps, ServiceControl, Inspection):
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

    async def close(self) -> None:
        """Stops pods (NICs go home while the services still run), services, runtime, netns.

        Runs to its end even when cancelled (then re-raises the cancellation)."""
        await to_completion(self._close())

    async def _close(self) -> None:
        for pod in list(self.pods.values()):
            await best_effort(f"stop pod {pod.name}", self.stop_pod(pod))
        for name in reversed(SERVICES):
            if name in self.services:
                await best_effort(f"stop {name}", self.services[name].stop())
        if self._kubelet_started:
            await best_effort("stop the kubelet stand-in", self.kubelet.stop())
            self._kubelet_started = False
        if self.runtime is not None:
            await best_effort("stop the runtime", self.runtime.stop())
            self.runtime = None
        if self._api_started:
            self.api.stop()
            self._api_started = False
        await asyncio.to_thread(self.lab.close)
        await asyncio.to_thread(shutil.rmtree, self.paths.base, True)
