"""Opening the store: pragmas, directory, damaged files, migrations, boot id."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dranet.errors import StoreError
from dranet.store import SCHEMA_VERSION, ClaimRecord, PreparedDevice, Role, Store, read_boot_id

from .store_helpers import BOOT, make_attachment, make_claim, write_v1_file


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


def test_wal_mode_and_busy_timeout_are_set(db: Path) -> None:
    with Store(db, role=Role.PLUGIN, boot_id=BOOT, busy_timeout_ms=1234) as store:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        with raw(db) as other:  # WAL is a property of the file, seen by every process
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_busy_timeout_waits_for_another_writer(db: Path, plugin: Store) -> None:
    with raw(db) as other:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        started = time.monotonic()
        plugin.put_claim(make_claim("u1"))  # waits instead of failing
        waited = time.monotonic() - started
        release.join()
    assert waited >= 0.25
    assert plugin.get_claim("u1") is not None


def test_busy_timeout_expiry_is_a_clear_error(db: Path) -> None:
    with Store(db, role=Role.PLUGIN, boot_id=BOOT, busy_timeout_ms=100) as store, raw(db) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="database is locked") as err:
            store.put_claim(make_claim("u1"))
        assert f"{db}: cannot write claim u1" in str(err.value)
        assert "longer than 100 ms" in str(err.value)
        other.execute("ROLLBACK")
        store.put_claim(make_claim("u1"))  # the store is still usable
        assert store.counts()["claims"] == 1


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)  # stricter than 0750: proves the mode is set, not inherited
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_077")
def test_missing_directories_are_created_0750(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "dranet" / "state.db"
    with Store(path, role=Role.AGENT, boot_id=BOOT):
        pass
    for d in (tmp_path / "var", tmp_path / "var" / "lib", path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o750, d


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.joinpath("mine").mkdir()
    os.chmod(tmp_path / "mine", 0o711)
    with Store(tmp_path / "mine" / "state.db", role=Role.PLUGIN, boot_id=BOOT):
        pass
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) == 0o711


def test_a_file_where_the_directory_should_be_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(StoreError, match="blocker"):
        Store(tmp_path / "blocker" / "state.db", role=Role.PLUGIN, boot_id=BOOT)


def test_a_directory_at_the_store_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=rf"{tmp_path} is a directory"):
        Store(tmp_path, role=Role.PLUGIN, boot_id=BOOT)


@pytest.mark.parametrize("role", list(Role))
def test_a_non_sqlite_file_names_the_path_and_the_fix(tmp_path: Path, role: Role) -> None:
    path = tmp_path / "state.db"
    content = b"this is not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreError) as err:
        Store(path, role=role, boot_id=BOOT)
    text = str(err.value)
    assert str(path) in text
    assert "file is not a database" in text
    assert "move the file and its -wal/-shm files aside" in text
    assert path.read_bytes() == content  # untouched, kept for inspection


def test_a_damaged_sqlite_file_names_the_path_and_the_fix(db: Path) -> None:
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as store:
        for i in range(100):
            store.put_claim(make_claim(f"u{i}", ndev=3))
    data = bytearray(db.read_bytes())
    data[4096:8192] = b"\xa5" * 4096  # scribble over the second page
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="malformed") as err:
        Store(db, role=Role.PLUGIN, boot_id=BOOT)
    assert str(db) in str(err.value)
    assert "move the file" in str(err.value)


def test_a_newer_schema_is_refused(db: Path) -> None:
    Store(db, role=Role.PLUGIN, boot_id=BOOT).close()
    with raw(db) as other:
        other.execute("PRAGMA user_version = 99")
    for role in Role:
        with pytest.raises(StoreError, match="schema version 99, newer than this build knows"):
            Store(db, role=role, boot_id=BOOT)


def test_an_empty_file_becomes_a_current_store(db: Path) -> None:
    db.parent.mkdir()
    db.touch()
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as store:
        store.put_claim(make_claim("u1"))
    with raw(db) as other:
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("role", [Role.PLUGIN, Role.AGENT])
def test_a_v1_store_is_migrated_with_its_data(tmp_path: Path, role: Role) -> None:
    path = tmp_path / "v1.db"
    write_v1_file(str(path), [("u1", ["p1", "p2"]), ("u2", ["p2"])])
    with Store(path, role=role, boot_id=BOOT) as store:
        assert store.dropped_stale_attachments == 0  # same boot: kept
        u1 = store.get_claim("u1")
        assert u1 == ClaimRecord(
            uid="u1",
            namespace="ns",
            name="claim-u1",
            pod_uids=("p1", "p2"),
            devices=(PreparedDevice("r", "p", "d", {"mtu": 1400}),),
            trace_context={},  # column added by v2, defaulted for old rows
            prepared_at=1600000000.0,
        )
        # The pod index of v2 was filled from the v1 JSON pod lists.
        assert [c.uid for c in store.claims_for_pod("p2")] == ["u1", "u2"]
        assert [c.uid for c in store.claims_for_pod("p1")] == ["u1"]
        assert [(a.claim_uid, a.original) for a in store.list_attachments()] == [
            ("u1", {"mtu": 1500}),
            ("u2", {"mtu": 1500}),
        ]
    with raw(path) as other:
        assert SCHEMA_VERSION == 2
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    write_v1_file(str(path), [("u1", ["p1"])])
    with raw(path) as other:  # a table in the way of step v1 -> v2
        other.execute("CREATE TABLE claim_pods (x)")
    with pytest.raises(
        StoreError, match=f"{path}: cannot migrate the schema: table claim_pods"
    ) as err:
        Store(path, role=Role.PLUGIN, boot_id=BOOT)
    assert "holds tables this version does not expect" in str(err.value)
    with raw(path) as other:
        assert other.execute("PRAGMA user_version").fetchone()[0] == 1
        columns = [r[1] for r in other.execute("PRAGMA table_info(claims)")]
        assert "trace_context" not in columns  # the ALTER of the same step was rolled back


def test_a_new_boot_drops_attachments_but_keeps_claims(db: Path) -> None:
    with Store(db, role=Role.PLUGIN, boot_id="boot-a") as plugin:
        plugin.put_claim(make_claim("u1"))
        plugin.put_claim(make_claim("u2"))
    with Store(db, role=Role.AGENT, boot_id="boot-a") as agent:
        agent.put_attachment(make_attachment("u1"))
        agent.put_attachment(make_attachment("u2"))
    # The plugin and a reader of the new boot leave the agent's rows alone.
    with Store(db, role=Role.PLUGIN, boot_id="boot-b") as plugin:
        assert plugin.dropped_stale_attachments == 0
        assert plugin.counts() == {"claims": 2, "attachments": 2}
    with Store(db, role=Role.AGENT, boot_id="boot-b") as agent:
        assert agent.dropped_stale_attachments == 2
        assert agent.list_attachments() == []
        assert [c.uid for c in agent.list_claims()] == ["u1", "u2"]
        agent.put_attachment(make_attachment("u1"))
    with raw(db) as other:
        assert other.execute("SELECT value FROM meta WHERE key = 'boot_id'").fetchone() == (
            "boot-b",
        )
    with Store(db, role=Role.AGENT, boot_id="boot-b") as agent:  # same boot: nothing dropped
        assert agent.dropped_stale_attachments == 0
        assert [a.boot_id for a in agent.list_attachments()] == ["boot-b"]


def test_boot_id_defaults_to_the_kernels(db: Path) -> None:
    kernel = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    with Store(db, role=Role.AGENT) as store:
        assert store.boot_id == kernel
        store.put_attachment(make_attachment("u1"))
        got = store.get_attachment("u1", "pci-0000-3b-00-0")
        assert got is not None
        assert got.boot_id == kernel


def test_an_unreadable_boot_id_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "boot_id"
    with pytest.raises(StoreError, match=f"cannot read the node boot id from {missing}"):
        read_boot_id(str(missing))
    missing.write_text("\n")
    with pytest.raises(StoreError, match="is empty"):
        read_boot_id(str(missing))


def test_an_empty_boot_id_is_refused(db: Path) -> None:
    with pytest.raises(StoreError, match="boot_id must not be empty"):
        Store(db, role=Role.AGENT, boot_id="")


def test_a_negative_busy_timeout_is_refused(db: Path) -> None:
    with pytest.raises(StoreError, match="busy_timeout_ms must be a non-negative int"):
        Store(db, role=Role.AGENT, boot_id=BOOT, busy_timeout_ms=-1)
