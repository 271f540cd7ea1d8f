"""The claim-state store: one SQLite file shared by the three services.

WAL mode so readers never block the writer and a second process sees a
committed row at once; `busy_timeout` so two writers queue instead of failing
with "database is locked". Each table has one writer, enforced here by role:
`claims` by the kubelet-plugin, `attachments` by the netlink-agent. Every write
is one `BEGIN IMMEDIATE` transaction. The API is blocking (callers use
`asyncio.to_thread`); a lock makes one Store safe to share between threads.
The SQL, record types, row mapping and migrations live in
`dranet.storeschema`; the records are re-exported here: import them from
`dranet.store`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from dranet import storeschema as sql
from dranet.errors import StoreError
from dranet.storeschema import (
    SCHEMA_VERSION,
    AttachmentPhase,
    AttachmentRecord,
    ClaimRecord,
    PreparedDevice,
)

__all__ = [
    "DEFAULT_PATH",
    "SCHEMA_VERSION",
    "AttachmentPhase",
    "AttachmentRecord",
    "ClaimRecord",
    "PreparedDevice",
    "Role",
    "Store",
    "StoreError",
    "read_boot_id",
]

DEFAULT_PATH = "/var/lib/dranet/state.db"
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
DIR_MODE = 0o750
_CORRUPT_HINT = (
    "the file is not a usable SQLite database: stop the dranet pod, move the file and its "
    "-wal/-shm files aside for inspection, and start the pod again to create an empty store"
)


class Role(StrEnum):
    PLUGIN = "plugin"
    AGENT = "agent"
    READER = "reader"


_WRITER_OF = {"claims": Role.PLUGIN, "attachments": Role.AGENT}
_SERVICE_OF = {Role.PLUGIN: "kubelet-plugin", Role.AGENT: "netlink-agent"}


def read_boot_id(path: str = BOOT_ID_FILE) -> str:
    """The kernel's id of the current boot."""
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
    except OSError as exc:
        raise StoreError(
            f"cannot read the node boot id from {path}: {exc.strerror or exc}",
            hint="mount /proc from the host or pass boot_id explicitly",
        ) from exc
    if not value:
        raise StoreError(f"the node boot id in {path} is empty", hint="pass boot_id explicitly")
    return value


class Store:
    """An open claim-state store. See the module docstring for the rules."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        role: Role,
        boot_id: str | None = None,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = Path(os.fspath(path))
        try:
            self.role = Role(role)
        except ValueError as exc:
            roles = ", ".join(r.value for r in Role)
            raise StoreError(f"unknown store role {role!r}", hint=f"use one of {roles}") from exc
        if not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise StoreError(f"busy_timeout_ms must be a non-negative int, got {busy_timeout_ms!r}")
        self.boot_id = read_boot_id() if boot_id is None else boot_id
        if not self.boot_id:
            raise StoreError("boot_id must not be empty", hint="omit it to read the kernel's")
        self.busy_timeout_ms = busy_timeout_ms
        self.dropped_stale_attachments = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._open()

    # --- opening ------------------------------------------------------------

    def _open(self) -> None:
        if self.path.is_dir():
            raise StoreError(
                f"claim-state store path {self.path} is a directory",
                hint="give the path of a file, e.g. /var/lib/dranet/state.db",
            )
        if self.role is Role.READER:
            if not self.path.exists():
                raise StoreError(
                    f"no claim-state store at {self.path}",
                    hint="start the kubelet-plugin or netlink-agent, which create it, "
                    "or check the path",
                )
        else:
            _ensure_dir(self.path.parent)
        mode = "rw" if self.role is Role.READER else "rwc"
        try:
            self._conn = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode={mode}",
                uri=True,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # callers hop threads via asyncio.to_thread
            )
            self._conn.row_factory = sqlite3.Row
            self._prepare(self._conn)
        except sqlite3.Error as exc:
            self.close()
            raise self._error("open", exc) from exc
        except BaseException:
            self.close()
            raise

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms:d}")
        check = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise StoreError(
                f"claim-state store {self.path} is damaged: {'; '.join(check[:3])}",
                hint=_CORRUPT_HINT,
            )
        version = sql.schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"claim-state store {self.path} has schema version {version}, newer than "
                f"this build knows ({SCHEMA_VERSION})",
                hint="run the same dranet version in every container of the pod",
            )
        if self.role is Role.READER:
            if version < SCHEMA_VERSION:
                raise StoreError(
                    f"claim-state store {self.path} has schema version {version}, this "
                    f"build needs {SCHEMA_VERSION}; a reader does not migrate it",
                    hint="start the kubelet-plugin or netlink-agent of this version first",
                )
            conn.execute("PRAGMA query_only = ON")  # SQLite itself refuses writes too
            return
        self._use_wal(conn)
        conn.execute("PRAGMA synchronous = FULL")  # the write-ahead row must survive
        if version < SCHEMA_VERSION:
            fix = "the file holds tables this version does not expect: " + _CORRUPT_HINT
            with self._transaction("migrate the schema", fix) as tx:
                sql.apply_migrations(tx, sql.schema_version(tx))  # re-read under the write lock
        if self.role is Role.AGENT:
            self._forget_earlier_boots()

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL mode, waiting up to busy_timeout for other processes.

        SQLite fails `PRAGMA journal_mode = WAL` at once, without applying
        busy_timeout, while another connection holds the write lock of a file
        still in rollback-journal mode: exactly what happens when the services
        start together on a fresh file. So retry it here until the timeout.
        """
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return  # another process (or an earlier start) already switched it
        started = time.monotonic()
        deadline = started + self.busy_timeout_ms / 1000
        pause = 0.002
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                now = time.monotonic()
                if now >= deadline:
                    raise StoreError(
                        f"claim-state store {self.path}: cannot switch to WAL mode: the "
                        f"database stayed locked for {(now - started) * 1000:.0f} ms "
                        f"(busy timeout {self.busy_timeout_ms} ms)",
                        hint="another process kept writing the file; look for a stuck "
                        "dranet container or raise the busy timeout",
                    ) from exc
                time.sleep(min(pause, deadline - now))
                pause = min(pause * 2, 0.05)
        if str(mode).lower() != "wal":
            raise StoreError(
                f"claim-state store {self.path} cannot use WAL mode (got {mode!r})",
                hint="put it on a local filesystem (hostPath), not a network share",
            )

    def _forget_earlier_boots(self) -> None:
        """Attachments of an earlier boot describe links that no longer exist."""
        with self._transaction("drop attachments of earlier boots") as tx:
            cur = tx.execute(sql.DROP_OTHER_BOOTS, (self.boot_id,))
            self.dropped_stale_attachments = cur.rowcount
            tx.execute(sql.RECORD_BOOT_ID, (self.boot_id,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------

    def _error(self, what: str, exc: sqlite3.Error, hint: str = "") -> StoreError:
        """A StoreError naming the file and the operation; `hint` if no better one."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            hint = _CORRUPT_HINT
        elif code == sqlite3.SQLITE_BUSY:
            hint = (
                f"another process held the write lock longer than {self.busy_timeout_ms} ms; "
                "look for a stuck dranet container or raise the busy timeout"
            )
        elif not hint:
            hint = "check that the file and its directory are readable and writable"
        return StoreError(f"claim-state store {self.path}: cannot {what}: {exc}", hint=hint)

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"claim-state store {self.path} is closed", hint="open a new Store")
        return self._conn

    def _check_writer(self, table: str) -> None:
        writer = _WRITER_OF[table]
        if self.role is not writer:
            raise StoreError(
                f"a store opened with role {self.role.value!r} may not write {table}: only the "
                f"{_SERVICE_OF[writer]} (role {writer.value!r}) writes that table",
                hint=f"ask the {_SERVICE_OF[writer]} to make this change",
            )

    @contextmanager
    def _transaction(self, what: str, hint: str = "") -> Iterator[sqlite3.Connection]:
        """One write transaction; everything in it lands, or nothing does."""
        with self._lock:
            conn = self._live()
            try:
                # IMMEDIATE takes the write lock now (waiting up to busy_timeout),
                # so no read-to-write upgrade can fail half-way.
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):  # keep the first error, it says why
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(what, exc, hint) from exc
                raise

    def _query(self, what: str, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self._live()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._error(what, exc) from exc

    # --- claims (written by role PLUGIN) -----------------------------------

    def put_claim(self, rec: ClaimRecord) -> None:
        """Insert or replace the claim with `rec.uid`."""
        self._check_writer("claims")
        params = sql.claim_params(rec, time.time())
        with self._transaction(f"write claim {rec.uid}") as tx:
            tx.execute(sql.PUT_CLAIM, params)
            tx.execute(sql.CLEAR_CLAIM_PODS, (rec.uid,))
            tx.executemany(sql.ADD_CLAIM_POD, [(pod, rec.uid) for pod in rec.pod_uids])

    def delete_claim(self, uid: str) -> bool:
        """Delete the claim; False if there was none."""
        self._check_writer("claims")
        with self._transaction(f"delete claim {uid}") as tx:
            tx.execute(sql.CLEAR_CLAIM_PODS, (uid,))
            return tx.execute(sql.DELETE_CLAIM, (uid,)).rowcount > 0

    def get_claim(self, uid: str) -> ClaimRecord | None:
        rows = self._query(f"read claim {uid}", sql.GET_CLAIM, (uid,))
        return sql.claim_from_row(rows[0]) if rows else None

    def list_claims(self) -> list[ClaimRecord]:
        rows = self._query("list claims", sql.LIST_CLAIMS)
        return [sql.claim_from_row(r) for r in rows]

    def claims_for_pod(self, pod_uid: str) -> list[ClaimRecord]:
        """Claims reserved for the pod, ordered by namespace, name, uid."""
        rows = self._query(f"list claims of pod {pod_uid}", sql.CLAIMS_FOR_POD, (pod_uid,))
        return [sql.claim_from_row(r) for r in rows]

    # --- attachments (written by role AGENT); key (claim_uid, device) ------

    def put_attachment(self, rec: AttachmentRecord) -> None:
        """Insert or replace the attachment, stamped with this boot id and the time."""
        self._check_writer("attachments")
        params = sql.attachment_params(rec, self.boot_id, time.time())
        with self._transaction(f"write attachment {rec.claim_uid}/{rec.device}") as tx:
            tx.execute(sql.PUT_ATTACHMENT, params)

    def insert_attachment(self, rec: AttachmentRecord) -> None:
        """Insert a new attachment; StoreError if (claim_uid, device) already has a row.

        The write-ahead of an attach: the row holds the only record of the
        device's host state, so it must never silently replace an older one.
        """
        self._check_writer("attachments")
        params = sql.attachment_params(rec, self.boot_id, time.time())
        key = f"{rec.claim_uid}/{rec.device}"
        with self._transaction(f"insert attachment {key}") as tx:
            if tx.execute(sql.GET_ATTACHMENT, (rec.claim_uid, rec.device)).fetchone():
                raise StoreError(
                    f"attachment {key} already exists; refusing to overwrite its recorded "
                    "host state",
                    hint="detach or release the claim first, or fix the device by hand",
                )
            tx.execute(sql.INSERT_ATTACHMENT, params)

    def delete_attachment(self, claim_uid: str, device: str) -> bool:
        """Delete the attachment; False if there was none."""
        self._check_writer("attachments")
        with self._transaction(f"delete attachment {claim_uid}/{device}") as tx:
            return tx.execute(sql.DELETE_ATTACHMENT, (claim_uid, device)).rowcount > 0

    def get_attachment(self, claim_uid: str, device: str) -> AttachmentRecord | None:
        what = f"read attachment {claim_uid}/{device}"
        rows = self._query(what, sql.GET_ATTACHMENT, (claim_uid, device))
        return sql.attachment_from_row(rows[0]) if rows else None

    def list_attachments(
        self, *, pod_uid: str | None = None, claim_uid: str | None = None
    ) -> list[AttachmentRecord]:
        """Attachments matching every filter given, ordered by claim uid and device."""
        filters = {"pod": pod_uid, "claim": claim_uid}
        rows = self._query("list attachments", sql.LIST_ATTACHMENTS, filters)
        return [sql.attachment_from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Rows per table, for metrics and status."""
        rows = self._query("count rows", sql.COUNTS)
        return {"claims": int(rows[0][0]), "attachments": int(rows[0][1])}


def _ensure_dir(directory: Path) -> None:
    """Create the store's directory (and missing parents) with mode 0750."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        for d in reversed(missing):
            try:
                d.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue  # another container created it first
            os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise StoreError(
            f"cannot create directory {directory} for the claim-state store: {exc.strerror or exc}",
            hint="create it (mode 0750) or choose a writable path",
        ) from exc
    if not directory.is_dir():
        raise StoreError(
            f"{directory} is not a directory; the claim-state store needs one there",
            hint="remove the file or choose another path",
        )
