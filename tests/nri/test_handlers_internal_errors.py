"""A bug in the hook reaches the runtime (and `kubectl describe pod`) as a clear error.

The runtime shows a plugin's error text verbatim, so an unexpected exception
must say what failed and where to look, not just "boom".
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dranet.agent.v1 import agent_pb2
from dranet.errors import DranetError
from dranet.metrics import Metrics
from dranet.nri import api_pb2
from dranet_nri_hook.handlers import PodHandlers
from dranet_nri_hook.plugin import PLUGIN_SERVICE, PluginService
from dranet_nri_hook.ttrpc import CallContext, RpcError
from dranet_sandbox.standins.runtime import make_pod

NETNS = "/var/run/netns/cni-4444"
LOOK = "see the nri-hook container's log"


class BrokenAgent:
    """An agent stub whose calls fail with something that is not a gRPC error."""

    async def AttachPod(self, request: Any, **kwargs: Any) -> Any:
        raise KeyError("interfaces")

    async def DetachPod(self, request: Any, **kwargs: Any) -> Any:
        raise ValueError("bad netns path")

    async def ListAttachments(self, request: Any, **kwargs: Any) -> Any:
        return agent_pb2.ListAttachmentsResponse()


def handlers() -> tuple[PodHandlers, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return PodHandlers(BrokenAgent(), timeout=0.5, metrics=metrics), metrics


async def test_attach_bug_says_what_failed_and_where_to_look() -> None:
    pod_handlers, metrics = handlers()
    with pytest.raises(DranetError) as caught:
        await pod_handlers.run_pod_sandbox(make_pod("u", name="web", netns=NETNS))
    message = str(caught.value)
    assert message.startswith(
        "dranet: internal error in dranet-nri-hook while attaching devices to pod default/web: "
        "KeyError: 'interfaces'"
    ), message
    assert LOOK in message
    assert isinstance(caught.value.__cause__, KeyError)
    sample = metrics.registry.get_sample_value(
        "dranet_events_total", {"event": "nri.RunPodSandbox", "result": "error"}
    )
    assert sample == 1


@pytest.mark.parametrize("event", ["stop_pod_sandbox", "remove_pod_sandbox"])
async def test_detach_bug_says_what_failed_and_where_to_look(event: str) -> None:
    pod_handlers, _ = handlers()
    with pytest.raises(DranetError) as caught:
        await getattr(pod_handlers, event)(make_pod("u", name="web", netns=NETNS))
    message = str(caught.value)
    assert "internal error in dranet-nri-hook while detaching devices from pod default/web" in (
        message
    )
    assert "ValueError: bad netns path" in message
    assert LOOK in message


async def test_the_runtime_gets_the_explained_text() -> None:
    pod_handlers, _ = handlers()
    handler = PluginService(pod_handlers).handlers()[(PLUGIN_SERVICE, "RunPodSandbox")]
    request = api_pb2.RunPodSandboxRequest(pod=make_pod("u", name="web", netns=NETNS))
    with pytest.raises(RpcError) as caught:
        await handler(request.SerializeToString(), CallContext("s", "m", None, {}))
    assert "internal error in dranet-nri-hook while attaching devices to pod default/web" in str(
        caught.value
    )
