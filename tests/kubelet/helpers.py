"""Test doubles and helpers for the kubelet-facing half of the plugin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import trace

from dranet.grpcserver import UnixServer
from dranet_kubelet_plugin.draservice import ClaimRef, PrepareOutcome, dra_servicer_adder
from dranet_kubelet_plugin.registration import (
    DEFAULT_SUPPORTED_VERSIONS,
    RegistrationServicer,
    dra_socket_path,
    registration_servicer_adder,
    registration_socket_path,
)

DRIVER = "dra.net"


async def serve(path: Path, *adders: Callable[[grpc.aio.Server], None]) -> grpc.aio.Server:
    """A grpc.aio server on a unix socket (the shared UnixServer does the same in production)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    server = grpc.aio.server()
    for add in adders:
        add(server)
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    return server


class FakePreparer:
    """Stands in for the prepare logic: scripted outcomes, records calls and concurrency."""

    def __init__(self, delay: float = 0.0) -> None:
        self.outcomes: dict[str, PrepareOutcome] = {}
        self.unprepare_errors: dict[str, str] = {}
        self.extra: dict[str, PrepareOutcome] = {}  # answers for UIDs nobody asked about
        self.omit: set[str] = set()  # UIDs left out of the answer
        self.fail: Exception | None = None
        self.delay = delay
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.active: dict[str, int] = {}
        self.max_active = 0
        self.max_active_per_claim: dict[str, int] = {}
        self._running = 0
        self.trace_ids: list[int] = []  # trace id current inside each call

    async def _enter(self, op: str, claims: Sequence[ClaimRef]) -> None:
        self.calls.append((op, tuple(c.uid for c in claims)))
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        self._running += 1
        self.max_active = max(self.max_active, self._running)
        for c in claims:
            self.active[c.uid] = self.active.get(c.uid, 0) + 1
            peak = max(self.max_active_per_claim.get(c.uid, 0), self.active[c.uid])
            self.max_active_per_claim[c.uid] = peak
        if self.fail is not None:
            self._leave(claims)
            raise self.fail
        await asyncio.sleep(self.delay)

    def _leave(self, claims: Sequence[ClaimRef]) -> None:
        self._running -= 1
        for c in claims:
            self.active[c.uid] -= 1

    async def prepare(self, claims: Sequence[ClaimRef]) -> Mapping[str, PrepareOutcome]:
        await self._enter("prepare", claims)
        self._leave(claims)
        answer = {
            c.uid: self.outcomes.get(c.uid, PrepareOutcome())
            for c in claims
            if c.uid not in self.omit
        }
        return {**answer, **self.extra}

    async def unprepare(self, claims: Sequence[ClaimRef]) -> Mapping[str, str]:
        await self._enter("unprepare", claims)
        self._leave(claims)
        return {
            c.uid: self.unprepare_errors.get(c.uid, "") for c in claims if c.uid not in self.omit
        }


class PluginUnderTest:
    """The kubelet-facing plugin half, served as in production: DRA socket first."""

    def __init__(
        self,
        root: Path,
        preparer: FakePreparer,
        *,
        endpoint: str | None = None,
        supported_versions: Sequence[str] = DEFAULT_SUPPORTED_VERSIONS,
        interceptors: Sequence[Any] = (),
    ) -> None:
        self.root = root
        self.preparer = preparer
        self.dra_path = dra_socket_path(root, DRIVER)
        self.reg_path = registration_socket_path(root, DRIVER)
        self.registration = RegistrationServicer(
            DRIVER,
            endpoint if endpoint is not None else self.dra_path,
            supported_versions=supported_versions,
        )
        self.interceptors = list(interceptors)
        self.servers: list[UnixServer] = []

    async def start(self) -> None:
        # As in production: the DRA socket exists before the kubelet can learn about it.
        for path, adder, interceptors in (
            (self.dra_path, dra_servicer_adder(self.preparer), self.interceptors),
            (self.reg_path, registration_servicer_adder(self.registration), []),
        ):
            server = UnixServer(path, adders=[adder], interceptors=interceptors)
            await server.start()
            self.servers.append(server)

    async def stop(self) -> None:
        for server in reversed(self.servers):
            await server.stop(0)
        self.servers.clear()
