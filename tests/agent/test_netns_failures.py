"""Failed namespace opens leak nothing, and only a vanished namespace counts as gone."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from dranet.errors import DranetError
from dranet.store import Store
from dranet_netlink_agent.attach import PodRef, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.detach import reap_orphans
from dranet_netlink_agent.netns import open_if_present, run_in_netns
from dranet_sandbox.netlab import NetLab

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-nf", "default", "nf-0")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_failed_opens_leak_no_fd(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    before = _fds()
    for target in [str(tmp_path / "missing")] * 50 + [str(plain)] * 50:
        with pytest.raises(DranetError):
            run_in_netns(target, lambda: None)
    assert _fds() == before


def test_only_a_missing_or_foreign_file_is_gone(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert open_if_present(str(tmp_path / "missing")) is None
    assert open_if_present(str(plain)) is None
    with NetLab() as lab:
        fd = open_if_present(lab.path(lab.node))
        assert fd is not None
        st = os.fstat(fd)
        os.close(fd)
        assert open_if_present(lab.path(lab.node), (st.st_dev, st.st_ino + 1)) is None


def test_other_open_errors_are_not_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    def emfile(path: Any, *args: Any, **kw: Any) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "open", emfile)
    with pytest.raises(OSError, match="Too many open files"):
        open_if_present("/run/netns/anything")


async def test_reaper_keeps_a_live_pod_it_cannot_open(
    lab: NetLab,
    ctx: AgentContext,
    plugin_store: Store,
    kit: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab.add_nic("nicf", node_cidr="10.61.0.2/24")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicf", {"interface": {"name": "net1"}}))
    await attach_pod(ctx, POD, lab.path(pod))
    real_open = os.open

    def emfile(path: Any, *args: Any, **kw: Any) -> int:
        if str(path) == lab.path(pod):
            raise OSError(errno.EMFILE, "Too many open files")
        return int(real_open(path, *args, **kw))

    monkeypatch.setattr(os, "open", emfile)
    assert await reap_orphans(ctx) == []
    monkeypatch.undo()

    assert [r.pod_uid for r in ctx.store.list_attachments()] == [POD.uid]
    assert kit.pod_links(pod) == ["lo", "net1"]
