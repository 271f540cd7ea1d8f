"""Registration handshake over real unix sockets, driven by the kubelet stand-in."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc
import pytest

from dranet.kubelet.pluginregistration.v1 import api_pb2 as reg_pb2
from dranet.kubelet.pluginregistration.v1 import api_pb2_grpc as reg_grpc
from dranet_kubelet_plugin.registration import (
    RegistrationServicer,
    RegistrationStatus,
    dra_socket_path,
    registration_socket_path,
    registry_dir,
)
from dranet_sandbox.standins.kubelet import KubeletStandin

from .helpers import DRIVER, FakePreparer, PluginUnderTest


def test_socket_paths_follow_the_kubelet_layout() -> None:
    root = Path("/var/lib/kubelet")
    assert dra_socket_path(root, "dra.net") == Path("/var/lib/kubelet/plugins/dra.net/dra.sock")
    assert registration_socket_path(root, "dra.net") == Path(
        "/var/lib/kubelet/plugins_registry/dra.net-reg.sock"
    )
    assert registration_socket_path(Path("/k"), "x").parent == registry_dir(Path("/k"))


def test_servicer_refuses_what_the_kubelet_would_reject() -> None:
    with pytest.raises(ValueError, match="driver_name is empty"):
        RegistrationServicer("", "/x/dra.sock")
    with pytest.raises(ValueError, match="supported_versions is empty"):
        RegistrationServicer("dra.net", "/x/dra.sock", supported_versions=())


async def test_get_info_answers_with_the_plugin_identity(plugin: PluginUnderTest) -> None:
    async with grpc.aio.insecure_channel(f"unix://{plugin.reg_path}") as channel:
        stub = reg_grpc.RegistrationStub(channel)
        info = await stub.GetInfo(reg_pb2.InfoRequest(), timeout=1.0)
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert info.endpoint == str(plugin.root / "plugins" / DRIVER / "dra.sock")
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    # Nothing is recorded before the kubelet reports back.
    assert plugin.registration.state.latest is None


async def test_handshake_registers_and_records_the_status(plugin: PluginUnderTest) -> None:
    async with KubeletStandin(plugin.root) as kubelet:
        async with asyncio.timeout(5):
            registered = await kubelet.wait_registered(DRIVER)
            await plugin.registration.state.wait_registered()
    assert registered.service == "v1.DRAPlugin"
    assert registered.endpoint == plugin.dra_path
    assert registered.socket == plugin.reg_path
    assert plugin.registration.state.registered
    assert plugin.registration.state.history == [RegistrationStatus(registered=True)]
    assert [a.registered for a in kubelet.attempts] == [True]


async def test_an_older_kubelet_picks_v1beta1(plugin: PluginUnderTest) -> None:
    async with KubeletStandin(plugin.root, known_services=["v1beta1.DRAPlugin"]) as kubelet:
        async with asyncio.timeout(5):
            registered = await kubelet.wait_registered(DRIVER)
    assert registered.service == "v1beta1.DRAPlugin"


async def test_refusal_is_recorded_and_logged(
    plugin: PluginUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dranet_kubelet_plugin.registration")
    async with KubeletStandin(plugin.root, known_services=["v9.DRAPlugin"]) as kubelet:
        async with asyncio.timeout(5):
            status = await plugin.registration.state.wait_notified()
            await kubelet.wait_attempts(1)
        assert DRIVER not in kubelet.plugins
    assert not status.registered
    assert "none of services supported by the plugin" in status.error
    assert not plugin.registration.state.registered
    refusals = [r for r in caplog.records if r.name == "dranet_kubelet_plugin.registration"]
    assert refusals, "a refusal must be logged"
    assert refusals[0].levelno == logging.ERROR
    assert "v9.DRAPlugin" in refusals[0].getMessage()
    assert DRIVER in refusals[0].getMessage()


async def test_missing_endpoint_is_refused(kubelet_root: Path) -> None:
    missing = kubelet_root / "plugins" / DRIVER / "nowhere.sock"
    under_test = PluginUnderTest(kubelet_root, FakePreparer(), endpoint=str(missing))
    await under_test.start()
    try:
        async with KubeletStandin(kubelet_root) as kubelet, asyncio.timeout(5):
            status = await under_test.registration.state.wait_notified()
            attempts = await kubelet.wait_attempts(1)
    finally:
        await under_test.stop()
    assert not status.registered
    assert f"endpoint {missing} does not exist" in status.error
    assert attempts[0].error == status.error


async def test_refused_plugin_is_retried_and_later_accepted(plugin: PluginUnderTest) -> None:
    # The kubelet retries with backoff; a later success replaces the refusal.
    async with KubeletStandin(plugin.root, known_services=["v9.DRAPlugin"]) as kubelet:
        async with asyncio.timeout(5):
            await kubelet.wait_attempts(2)
        kubelet.known_services = ("v1.DRAPlugin",)
        async with asyncio.timeout(5):
            await kubelet.wait_registered(DRIVER)
            await plugin.registration.state.wait_registered()
    history = plugin.registration.state.history
    assert [s.registered for s in history[:2]] == [False, False]
    assert history[-1] == RegistrationStatus(registered=True)


async def test_removed_socket_deregisters_and_recreated_socket_registers_again(
    plugin: PluginUnderTest,
) -> None:
    async with KubeletStandin(plugin.root) as kubelet:
        async with asyncio.timeout(5):
            first = await kubelet.wait_registered(DRIVER)
        await plugin.stop()
        if plugin.reg_path.exists():  # a crashed plugin may leave it; removal is what counts
            os.unlink(plugin.reg_path)
        async with asyncio.timeout(5):
            await kubelet.wait_deregistered(DRIVER)
        await plugin.start()
        async with asyncio.timeout(5):
            second = await kubelet.wait_registered(DRIVER)
    assert second is not first
    assert [s.registered for s in plugin.registration.state.history] == [True, True]


async def test_dot_files_and_plain_files_are_ignored(kubelet_root: Path) -> None:
    registry = registry_dir(kubelet_root)
    registry.mkdir(parents=True)
    (registry / "notes.txt").write_text("not a socket")
    hidden = FakePreparer()
    under_test = PluginUnderTest(kubelet_root, hidden)
    under_test.reg_path = registry / f".{DRIVER}-reg.sock"
    await under_test.start()
    try:
        async with KubeletStandin(kubelet_root) as kubelet:
            await asyncio.sleep(0.3)  # several watcher rounds
            assert kubelet.attempts == []
            assert under_test.registration.state.latest is None
    finally:
        await under_test.stop()
