"""Fixtures: the API server stand-in with a kubeconfig, a Kube client, a fake agent."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dranet.store import Role, Store
from dranet_kubelet_plugin.kube import Kube, RetryPolicy
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import NODE, AgentServer, FakeAgent


@pytest.fixture
def apiserver() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        server.add_node(NODE)
        yield server


@pytest.fixture
def kube(apiserver: FakeApiServer, tmp_path: Path) -> Iterator[Kube]:
    config = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    client = Kube.from_kubeconfig(
        str(config), timeout=2.0, retry=RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05)
    )
    yield client
    client.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can exceed that.
    path = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
async def agent(socket_dir: Path, fake_agent: FakeAgent) -> AsyncIterator[AgentServer]:
    server = AgentServer(str(socket_dir / "agent.sock"), fake_agent)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state" / "state.db", role=Role.PLUGIN, boot_id="boot-1") as opened:
        yield opened
