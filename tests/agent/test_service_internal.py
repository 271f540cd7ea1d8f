"""A bug in the agent reaches its caller as INTERNAL naming the call and the log.

Not grpc's bare "Unexpected <class ...>": the NRI hook shows the agent's
text in the pod's events, so it must say what failed and where to look.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import Store
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.service import AttachmentHub, NetlinkAgentService
from dranet_sandbox.netlab import NetLab

pytestmark = pytest.mark.root
POD = agent_pb2.PodRef(uid="pod-i", namespace="team-a", name="web-0")


class BuggyInventory:
    """The lab resolver with a lookup bug: `find` raises KeyError."""

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver

    def find(self, name: str) -> Any:
        raise KeyError(name)

    def devices(self) -> list[agent_pb2.Device]:
        return []

    async def subscribe(self) -> AsyncIterator[agent_pb2.DeviceEvent]:
        yield agent_pb2.DeviceEvent(kind=agent_pb2.DeviceEvent.SNAPSHOT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolver, name)


@pytest.fixture
async def stub(ctx: AgentContext, serve_agent: Any) -> Any:
    ctx.resolver = buggy = BuggyInventory(ctx.resolver)
    return await serve_agent(NetlinkAgentService(ctx, buggy, AttachmentHub()))


async def test_an_agent_bug_is_internal_naming_the_call_pod_and_log(
    lab: NetLab,
    plugin_store: Store,
    kit: Any,
    stub: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lab.add_nic("nicb")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicb", {}))
    request = agent_pb2.AttachPodRequest(pod=POD, netns_path=lab.path(pod))

    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AttachPod(request)

    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == (
        "internal error in dranet-netlink-agent while handling AttachPod for pod team-a/web-0: "
        "KeyError: 'nicb'; see the netlink-agent container's log in the dranet pod on this node"
    )
    (logged,) = [r for r in caplog.records if r.exc_info]
    assert logged.getMessage() == "AttachPod for pod team-a/web-0 failed unexpectedly"
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], KeyError)
    # Nothing was half done, and the agent still answers.
    assert plugin_store.list_attachments() == []
    assert kit.pod_links(pod) == ["lo"]
    assert lab.link("nicb", lab.node) is not None
    listed = await stub.ListAttachments(agent_pb2.ListAttachmentsRequest())
    assert list(listed.attachments) == []


async def test_a_refusal_keeps_its_own_code_and_text(
    lab: NetLab, plugin_store: Store, kit: Any, stub: Any
) -> None:
    pod = lab.add_pod()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AttachPod(
            agent_pb2.AttachPodRequest(pod=agent_pb2.PodRef(), netns_path=lab.path(pod))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("pod.uid is empty")
