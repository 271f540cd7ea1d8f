"""First open of a fresh store while other processes open or write it at the same moment.

SQLite does not apply busy_timeout to `PRAGMA journal_mode = WAL` when another
connection holds the write lock of a rollback-journal file: it fails at once
with "database is locked". Store waits for it itself, up to busy_timeout.
"""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dranet.errors import StoreError
from dranet.store import Role, Store

from . import open_race_helpers
from .store_helpers import BOOT, make_claim

ctx = multiprocessing.get_context("spawn")


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """A connection holding the write lock of `path`, a file still in rollback-journal mode."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_first_open_waits_for_a_writer_on_the_fresh_file(db: Path) -> None:
    db.parent.mkdir()
    other = hold_write_lock(db)
    release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    release.start()
    started = time.monotonic()
    try:
        with Store(db, role=Role.PLUGIN, boot_id=BOOT) as store:
            waited = time.monotonic() - started
            store.put_claim(make_claim("u1"))
            assert store._conn is not None
            assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        other.close()
    assert waited >= 0.25


def test_first_open_gives_up_after_busy_timeout_and_says_how_long_it_waited(db: Path) -> None:
    db.parent.mkdir()
    other = hold_write_lock(db)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as err:
            Store(db, role=Role.AGENT, boot_id=BOOT, busy_timeout_ms=300)
    finally:
        other.close()
    waited = time.monotonic() - started
    assert 0.29 <= waited < 3
    message = str(err.value)
    assert f"claim-state store {db}" in message
    assert "WAL" in message
    # The reported wait is the real one (about 300 ms), not a constant.
    reported = re.search(r"locked for (\d+) ms", message)
    assert reported is not None, message
    assert 290 <= int(reported.group(1)) <= waited * 1000 + 50
    assert "busy timeout" in message


def test_open_of_a_store_already_in_wal_mode_skips_the_switch(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(db, role=Role.PLUGIN, boot_id=BOOT).close()
    statements: list[str] = []
    original = sqlite3.connect

    def tracing_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = original(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracing_connect)
    Store(db, role=Role.AGENT, boot_id=BOOT).close()
    assert any("quick_check" in s for s in statements), statements  # the trace works
    assert not [s for s in statements if re.search(r"journal_mode\s*=", s, re.I)], statements


def test_many_processes_create_fresh_stores_at_once_without_failing(tmp_path: Path) -> None:
    # Before the fix 2-6 of 100 four-process rounds failed in ~2 ms with
    # "database is locked"; 150 rounds made that near certain to show.
    roles = ["plugin", "agent", "plugin", "agent"]
    rounds = 150
    barrier = ctx.Barrier(len(roles))
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=open_race_helpers.open_fresh_files,
            args=(str(tmp_path), role, rounds, barrier, out),
        )
        for role in roles
    ]
    for p in procs:
        p.start()
    failures = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    assert failures == [[]] * len(procs)
    assert len(list(tmp_path.glob("round-*.db"))) == rounds
