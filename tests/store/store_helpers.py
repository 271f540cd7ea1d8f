"""Record factories and child-process workers for the store tests.

Workers live in an importable module (not a test file) because
multiprocessing's spawn start method re-imports them by name in the child.
"""

from __future__ import annotations

import json
import sqlite3
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from dranet.store import (
    AttachmentPhase,
    AttachmentRecord,
    ClaimRecord,
    PreparedDevice,
    Role,
    Store,
)

BOOT = "boot-1111"

# The v1 schema exactly as it was released (written out by hand, not taken from
# dranet.storeschema, so a later edit of a released step makes the tests fail).
V1_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE claims (
    uid TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
    pod_uids TEXT NOT NULL, devices TEXT NOT NULL, prepared_at REAL NOT NULL);
CREATE TABLE attachments (
    claim_uid TEXT NOT NULL, device TEXT NOT NULL, pod_uid TEXT NOT NULL,
    pod_namespace TEXT NOT NULL, pod_name TEXT NOT NULL, netns_path TEXT NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('pending', 'moved', 'attached')),
    host_ifname TEXT NOT NULL, pod_ifname TEXT NOT NULL, original TEXT NOT NULL,
    result TEXT NOT NULL, boot_id TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (claim_uid, device));
PRAGMA user_version = 1;
"""


def make_claim(
    uid: str,
    pods: tuple[str, ...] = ("pod-a",),
    *,
    namespace: str = "ns",
    name: str = "",
    ndev: int = 1,
    prepared_at: float = 1700000000.25,
) -> ClaimRecord:
    devices = tuple(
        PreparedDevice(
            request=f"req{i}/sub",
            pool="node-1",
            device=f"pci-0000-3b-00-{i}",
            config={
                "interface": {"name": f"net{i}", "mtu": 9000, "addresses": ["10.0.0.1/24"]},
                "routes": [{"destination": "0.0.0.0/0", "gateway": "10.0.0.254"}],
                "ethtool": {"features": {"tx-checksumming": False}},
                "note": "naïve ✓",
                "none": None,
                "ratio": 0.5,
            },
        )
        for i in range(ndev)
    )
    return ClaimRecord(
        uid=uid,
        namespace=namespace,
        name=name or f"claim-{uid}",
        pod_uids=pods,
        devices=devices,
        trace_context={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"},
        prepared_at=prepared_at,
    )


def make_attachment(
    claim_uid: str,
    device: str = "pci-0000-3b-00-0",
    *,
    pod_uid: str = "pod-a",
    phase: AttachmentPhase = AttachmentPhase.PENDING,
) -> AttachmentRecord:
    return AttachmentRecord(
        claim_uid=claim_uid,
        device=device,
        pod_uid=pod_uid,
        pod_namespace="ns",
        pod_name=f"pod-{pod_uid}",
        netns_path=f"/var/run/netns/cni-{pod_uid}",
        phase=phase,
        host_ifname="eth1",
        pod_ifname="net0",
        original={
            "ifname": "eth1",
            "mtu": 1500,
            "mac": "02:00:00:00:00:01",
            "permanent_mac": "02:00:00:00:00:01",
            "pci_address": "0000:3b:00.0",
            "alias": "",
            "up": True,
            "addresses": [{"address": "192.0.2.10", "prefixlen": 24}],
            "routes": [],
        },
        result={"mac": "02:00:00:00:00:01", "ips": ["10.0.0.1/24"], "mtu": 9000},
    )


def write_v1_file(path: str, claims: list[tuple[str, list[str]]]) -> None:
    """A store file as a v1 build left it: claims (uid, pods) and one attachment each."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_SQL)
    for uid, pods in claims:
        devices = [{"request": "r", "pool": "p", "device": "d", "config": {"mtu": 1400}}]
        conn.execute(
            "INSERT INTO claims VALUES (?, 'ns', ?, ?, ?, 1600000000.0)",
            (uid, f"claim-{uid}", json.dumps(pods), json.dumps(devices)),
        )
        conn.execute(
            "INSERT INTO attachments VALUES (?, 'd', ?, 'ns', 'pod', '/run/netns/x', 'attached',"
            " 'eth1', 'net0', '{\"mtu\":1500}', '{}', ?, 1600000001.0)",
            (uid, pods[0], BOOT),
        )
    conn.commit()
    conn.close()


# --- child-process workers ---------------------------------------------------


def plugin_writer(path: str, n: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Writes n claims, rewrites every other one, deletes every fifth."""
    store = Store(path, role=Role.PLUGIN, boot_id=BOOT)
    barrier.wait()
    start = time.time()
    for i in range(n):
        store.put_claim(make_claim(f"c{i}", (f"pod{i}",)))
        store.get_claim(f"c{i}")
    for i in range(0, n, 2):
        store.put_claim(make_claim(f"c{i}", (f"pod{i}", "shared"), ndev=2))
    for i in range(0, n, 5):
        store.delete_claim(f"c{i}")
    out.put(("plugin", start, time.time()))
    store.close()


def agent_writer(path: str, n: int, barrier: Barrier, out: Queue[Any]) -> None:
    """Writes n pending attachments, then marks each attached."""
    store = Store(path, role=Role.AGENT, boot_id=BOOT)
    barrier.wait()
    start = time.time()
    for i in range(n):
        store.put_attachment(make_attachment(f"a{i}", pod_uid=f"pod{i}"))
        store.list_attachments(pod_uid=f"pod{i}")
    for i in range(n):
        store.put_attachment(
            make_attachment(f"a{i}", pod_uid=f"pod{i}", phase=AttachmentPhase.ATTACHED)
        )
    out.put(("agent", start, time.time()))
    store.close()


def open_and_write(path: str, role: str, index: int, barrier: Barrier) -> None:
    """Opens a store (maybe creating it) at the same moment as its siblings."""
    barrier.wait()
    store = Store(path, role=Role(role), boot_id=BOOT)
    if store.role is Role.PLUGIN:
        store.put_claim(make_claim(f"open-{index}"))
    else:
        store.put_attachment(make_attachment(f"open-{index}"))
    store.close()


def reader_echo(path: str, conn: Connection) -> None:
    """Answers each uid received with what a reader sees for it, right away."""
    store = Store(path, role=Role.READER, boot_id=BOOT)
    conn.send("ready")
    while (uid := conn.recv()) is not None:
        conn.send((store.get_claim(uid), store.get_attachment(uid, "pci-0000-3b-00-0")))
    store.close()


def agent_on_request(path: str, conn: Connection) -> None:
    """Writes an attachment for each uid received and reports once committed."""
    store = Store(path, role=Role.AGENT, boot_id=BOOT)
    conn.send("ready")
    while (uid := conn.recv()) is not None:
        store.put_attachment(make_attachment(uid))
        conn.send("done")
    store.close()


def write_then_hang_at_commit(path: str, kind: str, reached_commit: Event) -> None:
    """Starts one write and stops just before its COMMIT runs, to be SIGKILLed there."""
    role = Role.AGENT if kind == "attachment" else Role.PLUGIN
    store = Store(path, role=role, boot_id=BOOT)

    def on_statement(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            reached_commit.set()
            time.sleep(60)  # the parent kills us here

    store._conn.set_trace_callback(on_statement)  # type: ignore[union-attr]
    if kind == "attachment":
        store.put_attachment(
            make_attachment("keep", pod_uid="pod-new", phase=AttachmentPhase.ATTACHED)
        )
    else:
        pods = tuple(f"new-pod-{i}" for i in range(50))
        store.put_claim(make_claim(kind, pods, ndev=3))
