"""The node sandbox's three services: defined, started until ready, stopped.

Ready means: the agent answers gRPC health SERVING on its socket, the hook
is connected to the runtime, the plugin is registered with the kubelet
stand-in (a restart waits for a new connection or registration).
`ServiceControl` is a part of `NodeSandbox` (`dranet_sandbox.node`), which
sets the attributes it declares and records the pids (`save_state`).
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dranet.errors import PeerError
from dranet.grpcserver import unix_channel
from dranet_sandbox.netlab import NetLab
from dranet_sandbox.podruntime import ContainerdRuntime, PodRuntime
from dranet_sandbox.processes import (
    DRIVER,
    SandboxPaths,
    ServiceProcess,
    agent_argv,
    hook_argv,
    plugin_argv,
)
from dranet_sandbox.standins.kubelet import KubeletStandin

SERVICES = ("agent", "hook", "plugin")


class ServiceControl:
    """Service process management of `NodeSandbox`."""

    # Set by NodeSandbox.
    paths: SandboxPaths
    lab: NetLab
    node_name: str
    log_level: str
    runtime: PodRuntime | None
    kubelet: KubeletStandin
    services: dict[str, ServiceProcess]
    _kubelet_started: bool

    def save_state(self) -> None:
        """Records the pids for `teardown`; NodeSandbox defines it."""
        raise NotImplementedError

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
