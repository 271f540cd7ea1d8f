"""Entering namespaces from threads: the right namespace, no leaks, clear refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dranet.errors import InvalidArgumentError, RefusedError
from dranet_netlink_agent.netns import arun_in_netns, open_netns, rtnl, run_in_netns, same_netns
from dranet_sandbox.netlab import NetLab

pytestmark = pytest.mark.root


def _own_ns() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


async def test_rtnl_sees_only_that_namespace_and_closes_its_socket() -> None:
    with NetLab() as lab:
        lab.add_nic("nic7")
        fds_before = len(os.listdir("/proc/self/fd"))
        async with rtnl(lab.path(lab.node)) as ipr:
            names = {link.get("ifname") async for link in await ipr.link("dump")}
        assert names == {"lo", "nic7"}
        assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_code_runs_inside_and_caller_stays_outside() -> None:
    before = _own_ns()
    with NetLab() as lab:
        inside = await arun_in_netns(lab.path(lab.node), _own_ns)
        node = os.stat(lab.path(lab.node))
        assert inside == (node.st_dev, node.st_ino)
        assert run_in_netns(lab.path(lab.node), _own_ns) == inside
        assert same_netns(lab.path(lab.node), lab.path(lab.node))
        assert not same_netns(lab.path(lab.node), lab.path(lab.fabric))
    assert _own_ns() == before


def test_errors_inside_propagate() -> None:
    with NetLab() as lab, pytest.raises(ZeroDivisionError):
        run_in_netns(lab.path(lab.node), lambda: 1 // 0)


def test_non_netns_paths_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(RefusedError, match="is not a network namespace"):
        open_netns(str(plain))
    with pytest.raises(RefusedError, match="is not a network namespace"):
        open_netns("/proc/self/ns/uts")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        open_netns(str(tmp_path / "missing"))
