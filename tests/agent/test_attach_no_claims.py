"""A pod without dranet claims is answered at once, even while another attach holds the lock."""

from __future__ import annotations

import asyncio

import pytest

from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext

pytestmark = pytest.mark.root  # the ctx fixture builds a NetLab


async def test_pod_without_claims_does_not_wait_for_the_lock(ctx: AgentContext) -> None:
    async with ctx.lock:  # a slow attach/detach/reap of another pod
        done = await asyncio.wait_for(
            attach_pod(ctx, PodRef("pod-no-claims", "default", "plain-0"), "/run/netns/x"),
            timeout=2,
        )
    assert done == []
