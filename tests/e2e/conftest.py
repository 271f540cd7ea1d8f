"""Fixtures for the end-to-end tests on the node sandbox (dranet_sandbox.node).

`sandbox` is a started NodeSandbox with two NICs (eth1, eth2; fabric peers
10.200.<i>.1); `sandbox_factory(nics=N, runtime=...)` starts more. The
runtime is containerd when CI=true (a set-up failure then fails the test),
else `auto` (containerd, or the NRI stand-in when containerd cannot run).
Outside CI a sandbox that cannot be built skips the test with the reason.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from dranet_sandbox.node import NodeSandbox, RuntimeChoice

SandboxFactory = Callable[..., Awaitable[NodeSandbox]]
IN_CI = os.environ.get("CI") == "true"


def default_runtime() -> RuntimeChoice:
    return "containerd" if IN_CI else "auto"


@pytest.fixture
async def sandbox_factory() -> AsyncIterator[SandboxFactory]:
    made: list[NodeSandbox] = []

    async def make(nics: int = 2, runtime: RuntimeChoice | None = None) -> NodeSandbox:
        node = NodeSandbox(nics, runtime=runtime or default_runtime(), log_level="info")
        try:
            await node.start()
        except Exception as exc:
            if IN_CI:
                pytest.fail(f"CI=true but the node sandbox could not be set up: {exc}")
            pytest.skip(f"the node sandbox could not be set up: {exc}")
        made.append(node)
        return node

    yield make
    for node in reversed(made):
        await node.close()


@pytest.fixture
async def sandbox(sandbox_factory: SandboxFactory) -> NodeSandbox:
    return await sandbox_factory()
