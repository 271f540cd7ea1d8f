"""A bug in the plugin reaches the kubelet (and the pod's events) as a clear error.

The kubelet shows the RPC's text to the user: it must say what failed, for
which claims, and where to look, never grpc's bare "Unexpected <class ...>".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dranet.errors import PeerError
from dranet_kubelet_plugin.draservice import PreparedDeviceRef, PrepareOutcome, internal_error_text
from dranet_sandbox.standins.kubelet import Claim, KubeletStandin

from .helpers import DRIVER, PluginUnderTest

CLAIMS = [Claim("team-a", f"claim-{i}", f"uid-{i}") for i in range(2)]
LOOK = "see the kubelet-plugin container's log"


@pytest.fixture
async def kubelet(plugin: PluginUnderTest) -> AsyncIterator[KubeletStandin]:
    async with KubeletStandin(plugin.root) as standin:
        async with asyncio.timeout(5):
            await standin.wait_registered(DRIVER)
        yield standin


def test_internal_error_text_names_what_failed_and_where_to_look() -> None:
    text = internal_error_text("preparing claim ns/c", KeyError("request"))
    assert text == (
        "internal error in dranet-kubelet-plugin while preparing claim ns/c: KeyError: "
        "'request'; see the kubelet-plugin container's log in the dranet pod on this node"
    )
    assert internal_error_text("x", RuntimeError()).startswith(
        "internal error in dranet-kubelet-plugin while x: RuntimeError;"
    )


@pytest.mark.parametrize("service", ["v1.DRAPlugin", "v1beta1.DRAPlugin"])
async def test_a_preparer_bug_names_the_claims_and_the_log(
    plugin: PluginUnderTest, kubelet: KubeletStandin, service: str
) -> None:
    plugin.preparer.fail = RuntimeError("disk on fire")
    with pytest.raises(PeerError) as caught:
        await kubelet.prepare(CLAIMS, service=service)
    message = str(caught.value)
    assert "code = INTERNAL" in message
    assert (
        "internal error in dranet-kubelet-plugin while preparing claims team-a/claim-0, "
        "team-a/claim-1: RuntimeError: disk on fire" in message
    )
    assert LOOK in message
    with pytest.raises(PeerError) as caught:
        await kubelet.unprepare(CLAIMS[:1], service=service)
    assert "while unpreparing claim team-a/claim-0: RuntimeError: disk on fire" in str(caught.value)


async def test_a_bug_after_the_preparer_is_explained_too(
    plugin: PluginUnderTest, kubelet: KubeletStandin
) -> None:
    # A device the response cannot hold (pool must be a string) fails while
    # building the response, outside the preparer.
    bad = PreparedDeviceRef(requests=(), pool=7, device="eth1")  # type: ignore[arg-type]
    plugin.preparer.outcomes = {"uid-0": PrepareOutcome(devices=(bad,))}
    with pytest.raises(PeerError) as caught:
        await kubelet.prepare(CLAIMS[:1])
    message = str(caught.value)
    assert "Unexpected <class" not in message
    assert "internal error in dranet-kubelet-plugin while preparing claim team-a/claim-0" in (
        message
    )
    assert "TypeError" in message
    assert LOOK in message
