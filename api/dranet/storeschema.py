"""Schema of the claim-state store: records, row mapping, migrations, statements.

Every piece of SQL the driver runs is here; `dranet.store` runs it under its
connection, role and transaction rules. The records are what callers of
`dranet.store` pass and get back (re-exported there). Row mapping is pure:
records <-> column values, nested data as JSON text.

`MIGRATIONS[n]` takes a database from `PRAGMA user_version` n to n + 1. A step
is a tuple of single SQL statements (not a script) so the whole upgrade runs
inside the caller's one transaction: every step lands or none does. Never edit
a released step; append a new one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dranet.errors import StoreError


@dataclass(frozen=True)
class PreparedDevice:
    request: str  # request name in the claim ("req" or "req/sub")
    pool: str
    device: str  # DRA device name as published (pci-..., eth1, net-...)
    config: dict[str, Any]  # resolved+validated dranet config JSON (camelCase), {} if none


@dataclass(frozen=True)
class ClaimRecord:
    uid: str
    namespace: str
    name: str
    pod_uids: tuple[str, ...]  # pods the claim is reserved for
    devices: tuple[PreparedDevice, ...]
    trace_context: dict[str, str] = field(default_factory=dict)  # W3C carrier of prepare span
    prepared_at: float = 0.0  # unix time; set by put_claim if 0


class AttachmentPhase(StrEnum):
    PENDING = "pending"  # write-ahead row: original state recorded, nothing moved yet
    MOVED = "moved"  # the link is in the pod netns, configuration in progress
    ATTACHED = "attached"  # fully configured


@dataclass(frozen=True)
class AttachmentRecord:
    claim_uid: str
    device: str  # DRA device name
    pod_uid: str
    pod_namespace: str
    pod_name: str
    netns_path: str
    phase: AttachmentPhase
    host_ifname: str  # name on the node before attach
    pod_ifname: str  # name inside the pod
    original: dict[str, Any]  # host-side state to restore; agent-defined
    result: dict[str, Any] = field(default_factory=dict)  # what the attach produced
    boot_id: str = ""  # filled by the store
    updated_at: float = 0.0  # filled by the store


# --- row mapping: pure functions --------------------------------------------


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"{what} is not JSON-serialisable: {exc}", hint="store plain data"
        ) from exc


def _require(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise StoreError(f"{what} must be a non-empty string, got {value!r}")


def claim_params(rec: ClaimRecord, now: float) -> dict[str, Any]:
    """Column values for a claim row (prepared_at defaults to `now`)."""
    _require(rec.uid, "claim uid")
    for pod in rec.pod_uids:
        _require(pod, f"pod uid of claim {rec.uid}")
    devices = [
        {"request": d.request, "pool": d.pool, "device": d.device, "config": d.config}
        for d in rec.devices
    ]
    return {
        "uid": rec.uid,
        "namespace": rec.namespace,
        "name": rec.name,
        "pod_uids": _json(list(rec.pod_uids), f"pod uids of claim {rec.uid}"),
        "devices": _json(devices, f"devices of claim {rec.uid}"),
        "trace_context": _json(dict(rec.trace_context), f"trace context of claim {rec.uid}"),
        "prepared_at": rec.prepared_at or now,
    }


def claim_from_row(row: sqlite3.Row) -> ClaimRecord:
    return ClaimRecord(
        uid=row["uid"],
        namespace=row["namespace"],
        name=row["name"],
        pod_uids=tuple(json.loads(row["pod_uids"])),
        devices=tuple(PreparedDevice(**d) for d in json.loads(row["devices"])),
        trace_context=json.loads(row["trace_context"]),
        prepared_at=row["prepared_at"],
    )


def attachment_params(rec: AttachmentRecord, boot_id: str, now: float) -> dict[str, Any]:
    """Column values for an attachment row, stamped with this boot and time."""
    _require(rec.claim_uid, "attachment claim uid")
    _require(rec.device, f"device of attachment for claim {rec.claim_uid}")
    _require(rec.pod_uid, f"pod uid of attachment {rec.claim_uid}/{rec.device}")
    key = f"attachment {rec.claim_uid}/{rec.device}"
    try:
        phase = AttachmentPhase(rec.phase)
    except ValueError as exc:
        allowed = ", ".join(p.value for p in AttachmentPhase)
        raise StoreError(f"{key}: phase {rec.phase!r} is not one of {allowed}") from exc
    return {
        "claim_uid": rec.claim_uid,
        "device": rec.device,
        "pod_uid": rec.pod_uid,
        "pod_namespace": rec.pod_namespace,
        "pod_name": rec.pod_name,
        "netns_path": rec.netns_path,
        "phase": phase.value,
        "host_ifname": rec.host_ifname,
        "pod_ifname": rec.pod_ifname,
        "original": _json(rec.original, f"original state of {key}"),
        "result": _json(rec.result, f"result of {key}"),
        "boot_id": boot_id,
        "updated_at": now,
    }


def attachment_from_row(row: sqlite3.Row) -> AttachmentRecord:
    values = dict(zip(row.keys(), row, strict=True))
    values["phase"] = AttachmentPhase(values["phase"])
    values["original"] = json.loads(values["original"])
    values["result"] = json.loads(values["result"])
    return AttachmentRecord(**values)


# --- migrations -----------------------------------------------------------

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v0 -> v1: the first schema.
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
        # Written only by the kubelet-plugin.
        """CREATE TABLE claims (
            uid TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            pod_uids TEXT NOT NULL,     -- JSON list of pod UIDs
            devices TEXT NOT NULL,      -- JSON list of prepared devices
            prepared_at REAL NOT NULL
        )""",
        # Written only by the netlink-agent, before it moves anything.
        """CREATE TABLE attachments (
            claim_uid TEXT NOT NULL,
            device TEXT NOT NULL,
            pod_uid TEXT NOT NULL,
            pod_namespace TEXT NOT NULL,
            pod_name TEXT NOT NULL,
            netns_path TEXT NOT NULL,
            phase TEXT NOT NULL CHECK (phase IN ('pending', 'moved', 'attached')),
            host_ifname TEXT NOT NULL,
            pod_ifname TEXT NOT NULL,
            original TEXT NOT NULL,     -- JSON object
            result TEXT NOT NULL,       -- JSON object
            boot_id TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (claim_uid, device)
        )""",
    ),
    # v1 -> v2: claims carry the prepare span's trace context; pod lookups use
    # an index table instead of scanning every claim's JSON pod list.
    (
        "ALTER TABLE claims ADD COLUMN trace_context TEXT NOT NULL DEFAULT '{}'",
        """CREATE TABLE claim_pods (
            pod_uid TEXT NOT NULL,
            claim_uid TEXT NOT NULL,
            PRIMARY KEY (pod_uid, claim_uid)
        ) WITHOUT ROWID""",
        "CREATE INDEX claim_pods_by_claim ON claim_pods (claim_uid)",
        """INSERT OR IGNORE INTO claim_pods (pod_uid, claim_uid)
            SELECT j.value, c.uid FROM claims AS c, json_each(c.pod_uids) AS j""",
        "CREATE INDEX attachments_by_pod ON attachments (pod_uid)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the file (0 for a new, empty database)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def apply_migrations(conn: sqlite3.Connection, current: int) -> None:
    """Run every step from `current` up to SCHEMA_VERSION in the open transaction."""
    for step in MIGRATIONS[current:]:
        for statement in step:
            conn.execute(statement)
    # PRAGMA takes no bound parameters; SCHEMA_VERSION is a trusted int.
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


# --- statements (parameters by name or position as written) -----------------

CLAIM_COLUMNS = "c.uid, c.namespace, c.name, c.pod_uids, c.devices, c.trace_context, c.prepared_at"
_CLAIM_ORDER = " ORDER BY c.namespace, c.name, c.uid"
PUT_CLAIM = """
INSERT INTO claims (uid, namespace, name, pod_uids, devices, trace_context, prepared_at)
VALUES (:uid, :namespace, :name, :pod_uids, :devices, :trace_context, :prepared_at)
ON CONFLICT (uid) DO UPDATE SET namespace = excluded.namespace, name = excluded.name,
    pod_uids = excluded.pod_uids, devices = excluded.devices,
    trace_context = excluded.trace_context, prepared_at = excluded.prepared_at
"""
CLEAR_CLAIM_PODS = "DELETE FROM claim_pods WHERE claim_uid = ?"
ADD_CLAIM_POD = "INSERT OR IGNORE INTO claim_pods (pod_uid, claim_uid) VALUES (?, ?)"
DELETE_CLAIM = "DELETE FROM claims WHERE uid = ?"
GET_CLAIM = f"SELECT {CLAIM_COLUMNS} FROM claims AS c WHERE c.uid = ?"
LIST_CLAIMS = f"SELECT {CLAIM_COLUMNS} FROM claims AS c{_CLAIM_ORDER}"
CLAIMS_FOR_POD = (
    f"SELECT {CLAIM_COLUMNS} FROM claims AS c JOIN claim_pods AS p ON p.claim_uid = c.uid "
    f"WHERE p.pod_uid = ?{_CLAIM_ORDER}"
)

ATTACHMENT_COLUMNS = (
    "claim_uid, device, pod_uid, pod_namespace, pod_name, netns_path, phase, "
    "host_ifname, pod_ifname, original, result, boot_id, updated_at"
)
PUT_ATTACHMENT = f"""
INSERT OR REPLACE INTO attachments ({ATTACHMENT_COLUMNS})
VALUES (:claim_uid, :device, :pod_uid, :pod_namespace, :pod_name, :netns_path, :phase,
    :host_ifname, :pod_ifname, :original, :result, :boot_id, :updated_at)
"""
# The write-ahead row of a new attach: never replaces a row (claim, device) already has.
INSERT_ATTACHMENT = f"""
INSERT INTO attachments ({ATTACHMENT_COLUMNS})
VALUES (:claim_uid, :device, :pod_uid, :pod_namespace, :pod_name, :netns_path, :phase,
    :host_ifname, :pod_ifname, :original, :result, :boot_id, :updated_at)
"""
DELETE_ATTACHMENT = "DELETE FROM attachments WHERE claim_uid = ? AND device = ?"
GET_ATTACHMENT = f"SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE claim_uid = ? AND device = ?"
LIST_ATTACHMENTS = (  # a NULL filter matches every row
    f"SELECT {ATTACHMENT_COLUMNS} FROM attachments "
    "WHERE (:pod IS NULL OR pod_uid = :pod) AND (:claim IS NULL OR claim_uid = :claim) "
    "ORDER BY claim_uid, device"
)
DROP_OTHER_BOOTS = "DELETE FROM attachments WHERE boot_id <> ?"
RECORD_BOOT_ID = "INSERT OR REPLACE INTO meta (key, value) VALUES ('boot_id', ?)"
COUNTS = "SELECT (SELECT count(*) FROM claims), (SELECT count(*) FROM attachments)"
