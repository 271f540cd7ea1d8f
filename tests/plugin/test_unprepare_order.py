"""Unprepare forgets the claim before it releases it.

While the row exists, an AttachPod (a Synchronize, a retried sandbox) may attach
the claim's device again; once it is gone nothing can, so releasing after the
delete leaves nothing attached for a claim about to vanish.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import grpc
import pytest

from dranet.agent.v1 import agent_pb2
from dranet.store import Store
from dranet_kubelet_plugin.draservice import ClaimRef
from dranet_kubelet_plugin.kube import Kube
from dranet_kubelet_plugin.prepare import ClaimPreparer
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import DRIVER, NODE, AgentServer, FakeAgent, claim, result


class RowWatchingAgent(FakeAgent):
    """Records, at each ReleaseClaim, whether the claim's row was still in the store."""

    def __init__(self) -> None:
        super().__init__()
        self.store: Store | None = None
        self.row_present_at_release: list[bool] = []

    async def ReleaseClaim(self, request: Any, context: Any) -> agent_pb2.ReleaseClaimResponse:
        assert self.store is not None
        self.row_present_at_release.append(self.store.get_claim(request.claim_uid) is not None)
        return await super().ReleaseClaim(request, context)


@pytest.fixture
def fake_agent() -> RowWatchingAgent:
    return RowWatchingAgent()


async def published() -> Collection[str]:
    return {"eth1"}


@pytest.fixture
def preparer(kube: Kube, store: Store, agent: AgentServer) -> ClaimPreparer:
    assert isinstance(agent.agent, RowWatchingAgent)
    agent.agent.store = store
    return ClaimPreparer(
        kube=kube, store=store, agent=agent.stub, driver=DRIVER, node_name=NODE, inventory=published
    )


REF = ClaimRef(uid="uid-o", namespace="default", name="c")


async def test_the_row_is_gone_before_the_agent_releases(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store, agent: AgentServer
) -> None:
    apiserver.put("resourceclaims", claim("c", "uid-o", results=[result("nic", "eth1")]))
    assert (await preparer.prepare([REF]))["uid-o"].error == ""
    assert store.get_claim("uid-o") is not None

    assert await preparer.unprepare([REF]) == {"uid-o": ""}
    assert isinstance(agent.agent, RowWatchingAgent)
    assert agent.agent.row_present_at_release == [False]
    assert agent.agent.released == ["uid-o"]


async def test_a_failed_release_is_retried_after_the_row_is_gone(
    apiserver: FakeApiServer, preparer: ClaimPreparer, store: Store, agent: AgentServer
) -> None:
    apiserver.put("resourceclaims", claim("c", "uid-o", results=[result("nic", "eth1")]))
    await preparer.prepare([REF])
    agent.agent.release_error = grpc.StatusCode.UNAVAILABLE
    first = await preparer.unprepare([REF])
    assert "releasing claim default/c on the netlink agent failed" in first["uid-o"]
    assert "agent says no" in first["uid-o"]
    assert store.get_claim("uid-o") is None
    assert agent.agent.released == []

    agent.agent.release_error = None  # the kubelet retries unprepare
    assert await preparer.unprepare([REF]) == {"uid-o": ""}
    assert agent.agent.released == ["uid-o"]  # released although the row was already gone
