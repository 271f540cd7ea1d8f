from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dranet.cli import main as cli_main
from dranet.errors import SettingsError
from dranet.grpcserver import NOT_SERVING, SERVING, UnixServer, unix_channel

from .conftest import SAY, echo_adder


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def check(path: Path, service: str = "") -> int:
    async with unix_channel(path) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


async def cli(*argv: str) -> int:
    # The CLI is synchronous grpc: run it off the loop that serves the socket.
    return await asyncio.to_thread(cli_main, ["health", *argv])


async def test_creates_directory_and_socket_with_default_modes(tmp_path: Path) -> None:
    path = tmp_path / "run" / "agent" / "agent.sock"
    old = os.umask(0o022)  # the modes must not depend on the umask
    try:
        server = UnixServer(path, adders=[echo_adder()])
        await server.start()
    finally:
        os.umask(old)
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert mode(path) == 0o660
        assert mode(path.parent) == 0o750
        assert mode(path.parent.parent) == 0o755  # only the socket's own directory is narrowed
        async with unix_channel(path) as channel:
            assert await channel.unary_unary(SAY, None, None)(b"ping") == b"ping"
    finally:
        await server.stop(0)
    assert not path.exists()  # stop removes its socket


async def test_modes_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "private" / "x.sock"
    async with UnixServer(path, socket_mode=0o600, dir_mode=0o700):
        assert (mode(path), mode(path.parent)) == (0o600, 0o700)


async def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o1777)
    async with UnixServer(shared / "x.sock"):
        assert mode(shared) == 0o1777


async def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # bound, never listening: a crash leftover
        stale.bind(str(path))
    assert stat.S_ISSOCK(path.lstat().st_mode)
    async with UnixServer(path):
        assert await check(path) == SERVING


async def test_regular_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    path.write_text("precious")
    with pytest.raises(SettingsError) as refused:
        await UnixServer(path).start()
    message = str(refused.value)
    assert str(path) in message
    assert "not a socket" in message
    assert "remove it or choose another" in message
    assert path.read_text() == "precious"


async def test_socket_in_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    async with UnixServer(path):
        with pytest.raises(SettingsError, match="another process is serving"):
            await UnixServer(path).start()
        assert await check(path) == SERVING  # the first server is untouched


async def test_health_flips_and_cli_exit_code_follows(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    async with UnixServer(path, services=["dranet.agent.v1.Agent"]) as server:
        sock = str(path)
        assert await check(path) == SERVING
        assert await cli("--socket", sock) == 0
        assert await cli("--socket", sock, "--service", "dranet.agent.v1.Agent") == 0

        server.health.set("dranet.agent.v1.Agent", False)
        assert await check(path, "dranet.agent.v1.Agent") == NOT_SERVING
        assert await cli("--socket", sock, "--service", "dranet.agent.v1.Agent") == 1
        assert await cli("--socket", sock) == 0  # the whole server is still serving

        async with unix_channel(path) as channel:
            listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
        assert {name: r.status for name, r in listed.statuses.items()} == {
            "": SERVING,
            "dranet.agent.v1.Agent": NOT_SERVING,
        }

        server.health.set("", False)
        assert await cli("--socket", sock) == 1
        server.health.set("", True)
        assert await cli("--socket", sock) == 0

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await check(path, "no.such.Service")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert await cli("--socket", sock, "--service", "no.such.Service") == 1


async def test_not_serving_until_told_when_started_so(tmp_path: Path) -> None:
    server = UnixServer(tmp_path / "a.sock", services=["svc"])
    await server.start(serving=False)
    try:
        assert await check(server.path) == NOT_SERVING
        server.health.set_all(True)
        assert await check(server.path, "svc") == SERVING
    finally:
        await server.stop(0)


async def test_watch_streams_changes_and_stop_reports_not_serving(tmp_path: Path) -> None:
    server = UnixServer(tmp_path / "a.sock", services=["svc"])
    await server.start()
    channel = unix_channel(server.path)
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="svc")
        )
        seen = [(await watch.read()).status]
        server.health.set("svc", False)
        seen.append((await watch.read()).status)
        server.health.set("svc", True)
        seen.append((await watch.read()).status)
        stopping = asyncio.create_task(server.stop(grace=2))
        seen.append((await asyncio.wait_for(watch.read(), 5)).status)
        watch.cancel()
        await stopping
    finally:
        await channel.close(None)
    assert seen == [SERVING, NOT_SERVING, SERVING, NOT_SERVING]
    server.health.set("svc", True)  # after shutdown, statuses stay NOT_SERVING
    assert server.health.status("svc") == NOT_SERVING


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
async def test_group_is_given_to_socket_and_created_directory(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "a.sock"
    async with UnixServer(path, group=4321):
        assert path.lstat().st_gid == 4321
        assert path.parent.stat().st_gid == 4321
