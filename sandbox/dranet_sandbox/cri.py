"""A small CRI client: the part of the kubelet that runs pod sandboxes.

Speaks `runtime.v1.RuntimeService` (our own subset proto in `dranet.cri.v1`)
to a real containerd over its unix socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from dranet.cri.v1 import api_pb2 as cri
from dranet.cri.v1 import api_pb2_grpc as cri_grpc

_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    uid: str
    host_network: bool = False
    attempt: int = 0  # the kubelet counts up when it replaces a pod's sandbox
    annotations: dict[str, str] = field(default_factory=dict)


class CriClient:
    """Async CRI client; `async with CriClient(sock) as c: await c.run_pod(spec)`."""

    def __init__(self, socket: Path, log_dir: Path, *, wait_for_ready: bool = False) -> None:
        # wait_for_ready=True rides out a runtime restart as the kubelet does:
        # calls wait for the socket within their deadline (reconnection is
        # retried quickly). The default fails fast, e.g. on a dead daemon.
        self._channel = grpc.aio.insecure_channel(f"unix://{socket}", options=_RECONNECT)
        self._wait = wait_for_ready
        self._stub = cri_grpc.RuntimeServiceStub(self._channel)
        self._log_dir = log_dir

    async def __aenter__(self) -> CriClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close(None)

    async def version(self) -> cri.VersionResponse:
        return await self._stub.Version(
            cri.VersionRequest(version="v1"), timeout=5, wait_for_ready=self._wait
        )

    async def run_pod(self, spec: PodSpec, timeout: float = 30) -> str:
        mode = cri.NODE if spec.host_network else cri.POD
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(
                name=spec.name, namespace=spec.namespace, uid=spec.uid, attempt=spec.attempt
            ),
            # As the kubelet: a host-network pod shares the node's UTS namespace,
            # where runc refuses to set a hostname.
            hostname="" if spec.host_network else spec.name,
            log_directory=str(self._log_dir / spec.uid),
            labels={"io.kubernetes.pod.uid": spec.uid},
            annotations=spec.annotations,
            linux=cri.LinuxPodSandboxConfig(
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(network=mode)
                )
            ),
        )
        reply = await self._stub.RunPodSandbox(
            cri.RunPodSandboxRequest(config=config), timeout=timeout, wait_for_ready=self._wait
        )
        return str(reply.pod_sandbox_id)

    async def stop_pod(self, pod_id: str, timeout: float = 30) -> None:
        await self._stub.StopPodSandbox(
            cri.StopPodSandboxRequest(pod_sandbox_id=pod_id),
            timeout=timeout,
            wait_for_ready=self._wait,
        )

    async def remove_pod(self, pod_id: str, timeout: float = 30) -> None:
        await self._stub.RemovePodSandbox(
            cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id),
            timeout=timeout,
            wait_for_ready=self._wait,
        )

    async def status(self, pod_id: str) -> cri.PodSandboxStatusResponse:
        return await self._stub.PodSandboxStatus(
            cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True),
            timeout=10,
            wait_for_ready=self._wait,
        )

    async def netns_path(self, pod_id: str) -> str:
        """The sandbox's netns path, from containerd's verbose status info."""
        info = json.loads((await self.status(pod_id)).info.get("info", "{}"))
        for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network":
                return str(ns.get("path", ""))
        return ""

    async def list_pods(self) -> list[cri.PodSandbox]:
        reply = await self._stub.ListPodSandbox(
            cri.ListPodSandboxRequest(), timeout=10, wait_for_ready=self._wait
        )
        return list(reply.items)

    async def remove_all(self) -> None:
        """Stops and removes every sandbox (clean-up, also after a crash)."""
        for pod in await self.list_pods():
            await self.stop_pod(pod.id)
            await self.remove_pod(pod.id)
