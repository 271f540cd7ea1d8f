"""The node sandbox leaves nothing behind: after close, and when cancelled mid-start."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from dranet_sandbox.node import NodeSandbox

from .conftest import SandboxFactory, default_runtime

pytestmark = [pytest.mark.root, pytest.mark.runtime]


def netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def assert_gone(node: NodeSandbox, pids: list[int], paths: tuple[str, ...] = ()) -> None:
    assert not {n for n in netns_names() if n.startswith(node.lab.prefix)}
    assert not node.paths.base.exists()
    assert [pid for pid in pids if running(pid)] == []
    assert [path for path in paths if Path(path).exists()] == []


async def test_close_removes_everything_even_with_a_pod_running(
    sandbox_factory: SandboxFactory,
) -> None:
    node = await sandbox_factory(nics=1)
    node.control.create_claim("c1", parameters={"interface": {"name": "net1"}})
    pod = await node.start_pod("left-running", ["c1"])
    pids = [s.pid for s in node.services.values() if s.pid is not None]
    assert len(pids) == 3
    assert pod.netns

    await node.close()

    assert_gone(node, pids, (pod.netns,))
    assert node.runtime is None


async def test_cancelled_start_cleans_up() -> None:
    node = NodeSandbox(1, runtime=default_runtime())
    task = asyncio.create_task(node.start())
    # Cancel once the services are being started: namespaces, runtime and a process exist.
    while not node.services.get("agent") or node.services["agent"].pid is None:
        if task.done():
            task.result()
            pytest.fail("the sandbox started before it could be cancelled")
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(node, [p for s in node.services.values() if (p := s.pid) is not None])
    assert node.runtime is None
