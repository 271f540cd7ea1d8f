"""Shutdown drains the shielded transactions before the store closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.service import AttachmentHub, NetlinkAgentService

pytestmark = pytest.mark.root  # the ctx fixture builds a NetLab


class _NoDevices:
    def devices(self) -> list[Any]:
        return []

    async def subscribe(self) -> AsyncIterator[Any]:
        return
        yield


def _service(ctx: AgentContext) -> NetlinkAgentService:
    return NetlinkAgentService(ctx, _NoDevices(), AttachmentHub())  # type: ignore[arg-type]


async def test_drain_waits_for_a_transaction_whose_caller_gave_up(ctx: AgentContext) -> None:
    service = _service(ctx)
    finished = asyncio.Event()

    async def transaction() -> None:
        await asyncio.sleep(0.3)
        finished.set()

    caller = asyncio.create_task(service._whole(transaction()))
    await asyncio.sleep(0.05)
    caller.cancel()  # the RPC was cancelled by the server stop
    with contextlib.suppress(asyncio.CancelledError):
        await caller

    assert await service.drain(5) == 0
    assert finished.is_set()


async def test_drain_gives_up_after_its_timeout(
    ctx: AgentContext, caplog: pytest.LogCaptureFixture
) -> None:
    service = _service(ctx)
    stuck = asyncio.Event()
    caller = asyncio.create_task(service._whole(stuck.wait()))
    await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="dranet.agent"):
        assert await service.drain(0.1) == 1
    assert "still running" in caplog.text
    stuck.set()
    await caller
