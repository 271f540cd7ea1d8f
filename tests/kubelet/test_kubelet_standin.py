"""The kubelet stand-in enforces the kubelet's rules, so it catches a misbehaving plugin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dranet.errors import PeerError, ProtocolError
from dranet.kubelet.dra.v1 import api_pb2 as v1_pb2
from dranet.kubelet.dra.v1 import api_pb2_grpc as v1_grpc
from dranet.kubelet.pluginregistration.v1 import api_pb2 as reg_pb2
from dranet_kubelet_plugin.registration import (
    RegistrationServicer,
    add_registration_servicer,
    dra_socket_path,
    registration_socket_path,
)
from dranet_sandbox.standins.kubelet import (
    Claim,
    KubeletStandin,
    check_plugin_info,
    check_response_uids,
    choose_service,
    scan_sockets,
)

from .helpers import DRIVER, serve

CLAIMS = [Claim("ns", "a", "uid-a"), Claim("ns", "b", "uid-b")]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class BrokenPlugin(v1_grpc.DRAPluginServicer):
    """A v1 DRA plugin that answers with the wrong claim UIDs on purpose."""

    def __init__(self) -> None:
        self.drop: set[str] = set()
        self.add: set[str] = set()
        self.metadata: list[dict[str, str]] = []

    def _uids(self, request: Any, context: Any) -> list[str]:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        return [c.uid for c in request.claims if c.uid not in self.drop] + sorted(self.add)

    async def NodePrepareResources(self, request: Any, context: Any) -> Any:
        response = v1_pb2.NodePrepareResourcesResponse()
        for uid in self._uids(request, context):
            response.claims[uid].SetInParent()
        return response

    async def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        response = v1_pb2.NodeUnprepareResourcesResponse()
        for uid in self._uids(request, context):
            response.claims[uid].SetInParent()
        return response


@pytest.fixture
async def broken(kubelet_root: Path) -> AsyncIterator[tuple[BrokenPlugin, KubeletStandin]]:
    servicer = BrokenPlugin()
    dra = dra_socket_path(kubelet_root, DRIVER)
    servers = [
        await serve(dra, lambda s: v1_grpc.add_DRAPluginServicer_to_server(servicer, s)),
        await serve(
            registration_socket_path(kubelet_root, DRIVER),
            lambda s: add_registration_servicer(
                s, RegistrationServicer(DRIVER, dra, supported_versions=["v1.DRAPlugin"])
            ),
        ),
    ]
    try:
        async with KubeletStandin(kubelet_root) as kubelet:
            async with asyncio.timeout(5):
                await kubelet.wait_registered(DRIVER)
            yield servicer, kubelet
    finally:
        for server in servers:
            await server.stop(None)


async def test_well_behaved_answer_passes(broken: tuple[BrokenPlugin, KubeletStandin]) -> None:
    _, kubelet = broken
    assert sorted(await kubelet.prepare(CLAIMS)) == ["uid-a", "uid-b"]


@pytest.mark.parametrize("op", ["prepare", "unprepare"])
async def test_missing_uid_is_caught(broken: tuple[BrokenPlugin, KubeletStandin], op: str) -> None:
    servicer, kubelet = broken
    servicer.drop = {"uid-b"}
    method = "NodePrepareResources" if op == "prepare" else "NodeUnprepareResources"
    with pytest.raises(ProtocolError, match=f"{method} skipped 1 ResourceClaims \\(uid-b\\)"):
        await getattr(kubelet, op)(CLAIMS)


@pytest.mark.parametrize("op", ["prepare", "unprepare"])
async def test_unknown_uid_is_caught(broken: tuple[BrokenPlugin, KubeletStandin], op: str) -> None:
    servicer, kubelet = broken
    servicer.add = {"uid-ghost"}
    with pytest.raises(ProtocolError, match="returned result for unknown claim UID uid-ghost"):
        await getattr(kubelet, op)(CLAIMS)


async def test_traceparent_travels_as_grpc_metadata(
    broken: tuple[BrokenPlugin, KubeletStandin],
) -> None:
    servicer, kubelet = broken
    await kubelet.prepare(CLAIMS, traceparent=TRACEPARENT)
    await kubelet.unprepare(CLAIMS)
    assert servicer.metadata[0].get("traceparent") == TRACEPARENT
    assert "traceparent" not in servicer.metadata[1]


async def test_calls_to_an_unregistered_driver_fail_clearly(kubelet_root: Path) -> None:
    async with KubeletStandin(kubelet_root) as kubelet:
        with pytest.raises(PeerError, match=r"DRA driver other\.net is not registered"):
            await kubelet.prepare(CLAIMS, driver="other.net")
        with pytest.raises(PeerError, match="0 drivers registered"):
            await kubelet.unprepare(CLAIMS)


async def test_forcing_an_unknown_service_is_refused(
    broken: tuple[BrokenPlugin, KubeletStandin],
) -> None:
    _, kubelet = broken
    with pytest.raises(ValueError, match=r"unknown DRA service 'v2\.DRAPlugin'"):
        await kubelet.prepare(CLAIMS, service="v2.DRAPlugin")


async def test_plugin_that_does_not_answer_is_not_registered(kubelet_root: Path) -> None:
    # A socket whose server lacks the Registration service fails GetInfo.
    reg = registration_socket_path(kubelet_root, DRIVER)
    server = await serve(reg)  # serves no Registration service: UNIMPLEMENTED
    try:
        async with KubeletStandin(kubelet_root) as kubelet, asyncio.timeout(5):
            attempts = await kubelet.wait_attempts(1)
    finally:
        await server.stop(None)
    assert not attempts[0].registered
    assert "GetInfo: rpc error: code = UNIMPLEMENTED" in attempts[0].error


# --- pure rules -----------------------------------------------------------------


def test_choose_service_follows_the_plugin_order() -> None:
    known = ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert choose_service(["v1beta1.DRAPlugin", "v1.DRAPlugin"], known) == "v1beta1.DRAPlugin"
    assert choose_service(["v0.Foo", "v1.DRAPlugin"], known) == "v1.DRAPlugin"
    with pytest.raises(ValueError, match="empty list of supported versions"):
        choose_service([], known)
    with pytest.raises(ValueError, match=r"none of services supported by the plugin \(v9.X\)"):
        choose_service(["v9.X"], known)


def test_check_plugin_info(kubelet_root: Path) -> None:
    known = ["v1.DRAPlugin"]
    socket = kubelet_root / "reg.sock"
    plain = kubelet_root / "plain"
    plain.write_text("")

    def info(**fields: Any) -> reg_pb2.PluginInfo:
        base: dict[str, Any] = {
            "type": "DRAPlugin",
            "name": DRIVER,
            "endpoint": str(plain),
            "supported_versions": ["v1.DRAPlugin"],
        }
        return reg_pb2.PluginInfo(**{**base, **fields})

    with pytest.raises(ValueError, match="no handler registered for plugin type: CSIPlugin"):
        check_plugin_info(info(type="CSIPlugin"), socket, known)
    with pytest.raises(ValueError, match="empty name"):
        check_plugin_info(info(name=""), socket, known)
    with pytest.raises(ValueError, match="is not a unix socket"):
        check_plugin_info(info(), socket, known)
    with pytest.raises(ValueError, match="not an absolute path"):
        check_plugin_info(info(endpoint="rel/dra.sock"), socket, known)
    with pytest.raises(ValueError, match="does not exist"):
        check_plugin_info(info(endpoint=""), socket, known)  # empty -> the reg socket itself


def test_check_response_uids() -> None:
    check_response_uids("M", ["a", "b"], ["b", "a"])
    with pytest.raises(ProtocolError, match="M skipped 2 ResourceClaims"):
        check_response_uids("M", ["a", "b", "c"], ["a"])
    with pytest.raises(ProtocolError, match="unknown claim UID z"):
        check_response_uids("M", ["a"], ["a", "z"])


async def test_scan_sockets_sees_only_visible_sockets(kubelet_root: Path) -> None:
    (kubelet_root / "sub").mkdir()
    (kubelet_root / "file.sock").write_text("")
    servers = [
        await serve(kubelet_root / "sub" / "x-reg.sock"),
        await serve(kubelet_root / ".hidden-reg.sock"),
    ]
    try:
        found = await asyncio.to_thread(scan_sockets, kubelet_root)
    finally:
        for server in servers:
            await server.stop(None)
    assert list(found) == [kubelet_root / "sub" / "x-reg.sock"]
