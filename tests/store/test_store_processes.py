"""The store shared by real processes: concurrent writers, visibility, crashes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from dranet.store import AttachmentPhase, Role, Store

from . import store_helpers
from .store_helpers import BOOT, make_attachment, make_claim

# spawn: a fresh interpreter, like a separate container; no state inherited.
ctx = multiprocessing.get_context("spawn")
JOIN_S = 60


def run_all(*procs: multiprocessing.process.BaseProcess) -> None:
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_S)
    codes = [p.exitcode for p in procs]
    assert codes == [0] * len(procs), f"child exit codes {codes} (a traceback is in stderr)"


def test_plugin_and_agent_write_concurrently_without_losing_rows(db: Path) -> None:
    n = 150
    Store(db, role=Role.PLUGIN, boot_id=BOOT).close()
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    run_all(
        ctx.Process(target=store_helpers.plugin_writer, args=(str(db), n, barrier, out)),
        ctx.Process(target=store_helpers.agent_writer, args=(str(db), n, barrier, out)),
    )
    spans = dict((who, (start, end)) for who, start, end in (out.get(timeout=5) for _ in range(2)))
    # The two writers really ran at the same time.
    assert spans["plugin"][0] < spans["agent"][1]
    assert spans["agent"][0] < spans["plugin"][1]

    expected_claims = [
        make_claim(f"c{i}", (f"pod{i}", "shared"), ndev=2)
        if i % 2 == 0
        else make_claim(f"c{i}", (f"pod{i}",))
        for i in range(n)
        if i % 5 != 0
    ]
    with Store(db, role=Role.READER, boot_id=BOOT) as reader:
        claims = {c.uid: c for c in reader.list_claims()}
        assert claims == {c.uid: c for c in expected_claims}
        assert {c.uid for c in reader.claims_for_pod("shared")} == {
            c.uid for c in expected_claims if "shared" in c.pod_uids
        }
        attachments = reader.list_attachments()
        assert sorted(a.claim_uid for a in attachments) == sorted(f"a{i}" for i in range(n))
        assert {a.phase for a in attachments} == {AttachmentPhase.ATTACHED}
        assert reader.counts() == {"claims": len(expected_claims), "attachments": n}


def test_many_processes_can_create_a_fresh_store_at_once(db: Path) -> None:
    roles = ["plugin", "agent", "plugin", "agent"]
    barrier = ctx.Barrier(len(roles))
    run_all(
        *(
            ctx.Process(target=store_helpers.open_and_write, args=(str(db), role, i, barrier))
            for i, role in enumerate(roles)
        )
    )
    with Store(db, role=Role.READER, boot_id=BOOT) as reader:
        assert sorted(c.uid for c in reader.list_claims()) == ["open-0", "open-2"]
        assert sorted(a.claim_uid for a in reader.list_attachments()) == ["open-1", "open-3"]


def test_another_process_sees_committed_rows_at_once(db: Path) -> None:
    here, there = ctx.Pipe()
    with (
        Store(db, role=Role.PLUGIN, boot_id=BOOT) as plugin,
        Store(db, role=Role.AGENT, boot_id=BOOT) as agent,
    ):
        child = ctx.Process(target=store_helpers.reader_echo, args=(str(db), there))
        child.start()
        try:
            assert here.poll(JOIN_S) and here.recv() == "ready"
            for i in range(5):
                claim = make_claim(f"u{i}", ndev=i % 3)
                plugin.put_claim(claim)
                agent.put_attachment(make_attachment(f"u{i}"))
                here.send(f"u{i}")  # asked right after commit: no sleep, no retry
                assert here.poll(JOIN_S)
                seen_claim, seen_attachment = here.recv()
                assert seen_claim == claim
                assert seen_attachment == agent.get_attachment(f"u{i}", "pci-0000-3b-00-0")
            plugin.delete_claim("u0")
            here.send("u0")
            assert here.poll(JOIN_S)
            assert here.recv()[0] is None  # deletions are seen at once too
            here.send(None)
        finally:
            child.join(JOIN_S)
    assert child.exitcode == 0


def test_this_process_sees_another_process_commit_at_once(db: Path) -> None:
    here, there = ctx.Pipe()
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as plugin:
        child = ctx.Process(target=store_helpers.agent_on_request, args=(str(db), there))
        child.start()
        try:
            assert here.poll(JOIN_S) and here.recv() == "ready"
            for i in range(5):
                here.send(f"u{i}")
                assert here.poll(JOIN_S) and here.recv() == "done"
                got = plugin.get_attachment(f"u{i}", "pci-0000-3b-00-0")
                assert got is not None
                assert got.claim_uid == f"u{i}"
            here.send(None)
        finally:
            child.join(JOIN_S)
    assert child.exitcode == 0


@pytest.mark.parametrize("kind", ["existing", "brand-new", "attachment"])
def test_a_writer_killed_before_commit_leaves_nothing_half_written(db: Path, kind: str) -> None:
    old_claim = make_claim("existing", ("old-pod",))
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as plugin:
        plugin.put_claim(old_claim)
    with Store(db, role=Role.AGENT, boot_id=BOOT) as agent:
        agent.put_attachment(make_attachment("keep", pod_uid="old-pod"))
        old_attachment = agent.get_attachment("keep", "pci-0000-3b-00-0")

    reached_commit = ctx.Event()
    child = ctx.Process(
        target=store_helpers.write_then_hang_at_commit, args=(str(db), kind, reached_commit)
    )
    child.start()
    try:
        assert reached_commit.wait(JOIN_S), "the child never reached its COMMIT"
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(JOIN_S)
    assert child.exitcode == -signal.SIGKILL

    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as store:  # opens cleanly
        assert store.list_claims() == [old_claim]
        assert store.claims_for_pod("old-pod") == [old_claim]
        assert store.claims_for_pod("new-pod-0") == []
        assert store.list_attachments() == [old_attachment]
        assert store.counts() == {"claims": 1, "attachments": 1}
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM claim_pods").fetchone() == (1,)
    finally:
        conn.close()
