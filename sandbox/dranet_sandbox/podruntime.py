"""The container runtime of the node sandbox: real containerd, or the NRI stand-in.

Both give the node sandbox the same small surface: start/stop, the NRI
socket the hook connects to, `run_pod` (-> sandbox id and netns path),
`stop_pod`, `remove_pod`, and `wait_hook_ready`.

- `ContainerdRuntime`: containerd 1.7 with NRI, real runc and CNI bridge
  (`dranet_sandbox.containerd`), pods through CRI (`dranet_sandbox.cri`);
  the pod gets its normal `eth0` from CNI and lives in
  /var/run/netns/cni-*. A failed RunPodSandbox (e.g. the agent refused the
  attach) raises `PodStartError(stage="sandbox")` with containerd's message.
- `StandinRuntime`: `RuntimeStandIn` (NRI >= 0.12 style) plays the runtime;
  a pod is a NetLab namespace (loopback only, no `eth0`), created before the
  NRI RunPodSandbox event and deleted after RemovePodSandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc

from dranet.errors import PeerError
from dranet.nri import api_pb2
from dranet_sandbox.containerd import Containerd
from dranet_sandbox.cri import CriClient, PodSpec
from dranet_sandbox.netlab import NetLab
from dranet_sandbox.processes import NRI_PLUGIN_INDEX, NRI_PLUGIN_NAME, ServiceProcess
from dranet_sandbox.standins.runtime import PluginRejectedError, RuntimeStandIn, make_pod

PLUGIN_ID = f"{NRI_PLUGIN_INDEX}-{NRI_PLUGIN_NAME}"


class PodStartError(PeerError):
    """A pod did not start; `stage` says which layer refused it and `reason` is its message.

    Stages: "allocate" (the sandbox's allocator), "prepare" (the kubelet
    plugin's NodePrepareResources per-claim error, e.g. an invalid config),
    "sandbox" (RunPodSandbox failed: the runtime relays the NRI hook's error,
    which carries the agent's).
    """

    def __init__(self, stage: str, pod: str, reason: str) -> None:
        super().__init__(f"pod {pod} did not start ({stage}): {reason}")
        self.stage = stage
        self.reason = reason


class PodRuntime(Protocol):
    @property
    def description(self) -> str: ...
    @property
    def nri_socket(self) -> Path: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def run_pod(self, spec: PodSpec) -> tuple[str, str]: ...
    async def stop_pod(self, sandbox_id: str) -> None: ...
    async def remove_pod(self, sandbox_id: str) -> None: ...
    async def wait_hook_ready(self, hook: ServiceProcess, connections: int) -> None: ...
    def hook_connections(self) -> int: ...
    async def pod_uids(self) -> list[str]: ...


async def _poll(check: object, what: str, hook: ServiceProcess, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        hook.check_alive()
        if loop.time() > deadline:
            raise PeerError(f"timed out after {timeout}s waiting for {what}:\n{hook.log_text()}")
        await asyncio.sleep(0.05)


@dataclass
class ContainerdRuntime:
    base: Path
    netns: str  # path of the node netns
    ignore_bridge: str = ""
    daemon: Containerd = field(init=False)
    cri: CriClient | None = None
    description: str = "containerd"

    def __post_init__(self) -> None:
        self.daemon = Containerd(base=self.base, netns=self.netns)
        self.ignore_bridge = self.daemon.bridge

    @property
    def nri_socket(self) -> Path:
        return self.daemon.nri_socket

    async def start(self) -> None:
        starting = asyncio.ensure_future(asyncio.to_thread(self.daemon.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:  # let the thread finish, then undo it
            with contextlib.suppress(Exception):
                await starting
            await asyncio.to_thread(self.daemon.stop)
            raise
        self.cri = CriClient(self.daemon.cri_socket, self.base / "logs")
        try:
            version = await self.cri.version()
        except grpc.aio.AioRpcError as exc:
            await self.stop()
            raise PeerError(f"containerd does not answer CRI Version: {exc.details()}") from exc
        self.description = f"{version.runtime_name} {version.runtime_version}"

    async def stop(self) -> None:
        if self.cri is not None:
            # A dead daemon cannot answer; Containerd.stop unmounts what it left.
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self.cri.remove_all()
            await self.cri.__aexit__()
            self.cri = None
        await asyncio.to_thread(self.daemon.stop)

    def _cri(self) -> CriClient:
        if self.cri is None:
            raise PeerError("containerd is not running")
        return self.cri

    async def run_pod(self, spec: PodSpec) -> tuple[str, str]:
        try:
            sandbox_id = await self._cri().run_pod(spec)
        except grpc.aio.AioRpcError as exc:
            raise PodStartError(
                "sandbox", f"{spec.namespace}/{spec.name}", str(exc.details())
            ) from exc
        return sandbox_id, await self._cri().netns_path(sandbox_id)

    async def stop_pod(self, sandbox_id: str) -> None:
        await self._cri().stop_pod(sandbox_id)

    async def remove_pod(self, sandbox_id: str) -> None:
        await self._cri().remove_pod(sandbox_id)

    async def pod_uids(self) -> list[str]:
        """The pods the runtime knows (ListPodSandbox), by pod UID."""
        return [p.metadata.uid for p in await self._cri().list_pods()]

    def hook_connections(self) -> int:
        try:
            log = self.daemon.log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        # logfmt escapes the quotes: msg="plugin \"00-dranet\" connected"
        return log.replace('\\"', '"').count(f'plugin "{PLUGIN_ID}" connected')

    async def wait_hook_ready(self, hook: ServiceProcess, connections: int) -> None:
        """containerd delivers events to the hook once it logged the new connection."""
        await _poll(
            lambda: self.hook_connections() > connections,
            f"containerd to connect NRI plugin {PLUGIN_ID}",
            hook,
            20,
        )


@dataclass
class StandinRuntime:
    base: Path
    lab: NetLab
    reason: str = ""  # why containerd is not used
    runtime: RuntimeStandIn = field(init=False)
    description: str = "stand-in"
    _pods: dict[str, tuple[api_pb2.PodSandbox, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runtime = RuntimeStandIn(
            self.base / "nri.sock", style="new", runtime_name="dranet-standin"
        )

    @property
    def nri_socket(self) -> Path:
        return self.runtime.socket_path

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        for sandbox_id in list(self._pods):
            await self.stop_pod(sandbox_id)
            await self.remove_pod(sandbox_id)
        await self.runtime.stop()

    async def run_pod(self, spec: PodSpec) -> tuple[str, str]:
        netns = await asyncio.to_thread(self.lab.add_pod, "pod")
        path = self.lab.path(netns)
        pod = make_pod(spec.uid, name=spec.name, namespace=spec.namespace, netns=path)
        try:
            await self.runtime.run_pod_sandbox(pod)
        except PluginRejectedError as exc:
            await asyncio.to_thread(self.lab.delete_netns, netns)
            raise PodStartError("sandbox", f"{spec.namespace}/{spec.name}", str(exc)) from exc
        self._pods[pod.id] = (pod, netns)
        return pod.id, path

    async def stop_pod(self, sandbox_id: str) -> None:
        if sandbox_id in self._pods:
            await self.runtime.stop_pod_sandbox(self._pods[sandbox_id][0])

    async def remove_pod(self, sandbox_id: str) -> None:
        entry = self._pods.pop(sandbox_id, None)
        if entry is not None:
            await self.runtime.remove_pod_sandbox(entry[0])
            await asyncio.to_thread(self.lab.delete_netns, entry[1])

    def hook_connections(self) -> int:
        return sum(1 for p in self.runtime.plugins if p.ready.is_set())

    async def pod_uids(self) -> list[str]:
        return [pod.uid for pod, _ in self._pods.values()]

    async def wait_hook_ready(self, hook: ServiceProcess, connections: int) -> None:
        await _poll(lambda: self.hook_connections() > connections, "the hook to register", hook, 20)
