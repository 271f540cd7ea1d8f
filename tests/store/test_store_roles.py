"""One writer per table: the role a Store is opened with decides what it may write."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dranet.errors import StoreError
from dranet.store import SCHEMA_VERSION, Role, Store

from .store_helpers import BOOT, make_attachment, make_claim, write_v1_file

Write = Callable[[Store], object]
PUT_CLAIM: Write = lambda s: s.put_claim(make_claim("new"))  # noqa: E731
DELETE_CLAIM: Write = lambda s: s.delete_claim("kept")  # noqa: E731
PUT_ATTACHMENT: Write = lambda s: s.put_attachment(make_attachment("new"))  # noqa: E731
DELETE_ATTACHMENT: Write = lambda s: s.delete_attachment("kept", "pci-0000-3b-00-0")  # noqa: E731

CLAIMS_BY_PLUGIN = "only the kubelet-plugin \\(role 'plugin'\\) writes that table"
ATTACHMENTS_BY_AGENT = "only the netlink-agent \\(role 'agent'\\) writes that table"


@pytest.mark.parametrize(
    ("role", "write", "message"),
    [
        (
            Role.PLUGIN,
            PUT_ATTACHMENT,
            f"role 'plugin' may not write attachments: {ATTACHMENTS_BY_AGENT}",
        ),
        (
            Role.PLUGIN,
            DELETE_ATTACHMENT,
            f"role 'plugin' may not write attachments: {ATTACHMENTS_BY_AGENT}",
        ),
        (Role.AGENT, PUT_CLAIM, f"role 'agent' may not write claims: {CLAIMS_BY_PLUGIN}"),
        (Role.AGENT, DELETE_CLAIM, f"role 'agent' may not write claims: {CLAIMS_BY_PLUGIN}"),
        (Role.READER, PUT_CLAIM, f"role 'reader' may not write claims: {CLAIMS_BY_PLUGIN}"),
        (Role.READER, DELETE_CLAIM, f"role 'reader' may not write claims: {CLAIMS_BY_PLUGIN}"),
        (
            Role.READER,
            PUT_ATTACHMENT,
            f"role 'reader' may not write attachments: {ATTACHMENTS_BY_AGENT}",
        ),
        (
            Role.READER,
            DELETE_ATTACHMENT,
            f"role 'reader' may not write attachments: {ATTACHMENTS_BY_AGENT}",
        ),
    ],
)
def test_a_role_cannot_write_another_writers_table(
    db: Path, role: Role, write: Write, message: str
) -> None:
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as plugin:
        plugin.put_claim(make_claim("kept"))
    with Store(db, role=Role.AGENT, boot_id=BOOT) as agent:
        agent.put_attachment(make_attachment("kept"))
    with Store(db, role=role, boot_id=BOOT) as store:
        before = (store.list_claims(), store.list_attachments())
        assert len(before[0]) == len(before[1]) == 1
        with pytest.raises(StoreError, match=message) as err:
            write(store)
        assert "ask the" in str(err.value)  # says what to do instead
        assert (store.list_claims(), store.list_attachments()) == before


def test_each_writer_can_write_its_own_table(plugin: Store, agent: Store) -> None:
    plugin.put_claim(make_claim("u1"))
    agent.put_attachment(make_attachment("u1"))
    assert plugin.delete_claim("u1")
    assert agent.delete_attachment("u1", "pci-0000-3b-00-0")


def test_reader_reads_what_the_writers_wrote(plugin: Store, agent: Store, reader: Store) -> None:
    claim = make_claim("u1", ("p1",))
    plugin.put_claim(claim)
    agent.put_attachment(make_attachment("u1", pod_uid="p1"))
    assert reader.get_claim("u1") == claim
    assert reader.claims_for_pod("p1") == [claim]
    assert reader.list_claims() == [claim]
    assert reader.list_attachments(pod_uid="p1") == agent.list_attachments()
    assert reader.counts() == {"claims": 1, "attachments": 1}


def test_reader_connection_is_query_only(reader: Store) -> None:
    # Defence in depth: SQLite itself refuses writes on the reader's connection.
    conn = reader._conn
    assert conn is not None
    assert conn.execute("PRAGMA query_only").fetchone()[0] == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM claims")


def test_reader_does_not_create_a_missing_store(db: Path) -> None:
    with pytest.raises(StoreError, match=rf"no claim-state store at {db}") as err:
        Store(db, role=Role.READER, boot_id=BOOT)
    assert "start the kubelet-plugin or netlink-agent" in str(err.value)
    assert not db.exists()
    assert not db.parent.exists()


def test_reader_does_not_migrate_an_older_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    write_v1_file(str(path), [("u1", ["p1"])])
    with pytest.raises(StoreError, match=f"schema version 1, this build needs {SCHEMA_VERSION}"):
        Store(path, role=Role.READER, boot_id=BOOT)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        raw.close()


def test_reader_does_not_drop_stale_attachments(db: Path, agent: Store) -> None:
    agent.put_attachment(make_attachment("u1"))
    with Store(db, role=Role.READER, boot_id="a-later-boot") as reader:
        assert reader.dropped_stale_attachments == 0
        assert len(reader.list_attachments()) == 1


def test_roles_given_as_strings_are_accepted(db: Path) -> None:
    with Store(db, role="plugin", boot_id=BOOT) as store:  # type: ignore[arg-type]
        assert store.role is Role.PLUGIN
        store.put_claim(make_claim("u1"))


def test_unknown_role_is_refused(db: Path) -> None:
    with pytest.raises(
        StoreError, match=r"unknown store role 'writer' \(use one of plugin, agent, reader\)"
    ):
        Store(db, role="writer", boot_id=BOOT)  # type: ignore[arg-type]
    assert not db.exists()
