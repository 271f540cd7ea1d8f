"""Records in and out of the store: every field, JSON columns, lookups, filters."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import pytest

from dranet.errors import StoreError
from dranet.store import AttachmentPhase, ClaimRecord, PreparedDevice, Role, Store

from .store_helpers import BOOT, make_attachment, make_claim


def test_claim_round_trips_every_field(db: Path, plugin: Store) -> None:
    rec = make_claim("u1", ("pod-a", "pod-b"), ndev=2, prepared_at=1234.5)
    plugin.put_claim(rec)
    assert plugin.get_claim("u1") == rec
    with Store(db, role=Role.READER, boot_id=BOOT) as other:
        got = other.get_claim("u1")
    assert got == rec
    assert got is not None
    assert isinstance(got.pod_uids, tuple)
    assert isinstance(got.devices, tuple)
    assert all(isinstance(d, PreparedDevice) for d in got.devices)


def test_claim_with_empty_fields_round_trips(plugin: Store) -> None:
    rec = ClaimRecord(uid="bare", namespace="", name="", pod_uids=(), devices=(), prepared_at=1.0)
    plugin.put_claim(rec)
    assert plugin.get_claim("bare") == rec


def test_put_claim_sets_prepared_at_when_zero(plugin: Store) -> None:
    before = time.time()
    plugin.put_claim(make_claim("u1", prepared_at=0.0))
    after = time.time()
    got = plugin.get_claim("u1")
    assert got is not None
    assert before <= got.prepared_at <= after


def test_attachment_round_trips_every_field(db: Path, plugin: Store, agent: Store) -> None:
    rec = dataclasses.replace(
        make_attachment("u1", phase=AttachmentPhase.MOVED), boot_id="ignored", updated_at=5.0
    )
    before = time.time()
    agent.put_attachment(rec)
    after = time.time()
    got = agent.get_attachment("u1", rec.device)
    assert got is not None
    # The store stamps its own boot id and the write time; every other field is kept.
    assert got == dataclasses.replace(rec, boot_id=BOOT, updated_at=got.updated_at)
    assert before <= got.updated_at <= after
    assert got.phase is AttachmentPhase.MOVED
    assert plugin.get_attachment("u1", rec.device) == got


def test_nested_data_is_stored_as_json_text(db: Path, plugin: Store, agent: Store) -> None:
    claim = make_claim("u1", ("p1", "p2"))
    plugin.put_claim(claim)
    agent.put_attachment(make_attachment("u1"))
    raw = sqlite3.connect(db)
    try:
        pods, devices, trace = raw.execute(
            "SELECT pod_uids, devices, trace_context FROM claims WHERE uid = 'u1'"
        ).fetchone()
        assert json.loads(pods) == ["p1", "p2"]
        assert json.loads(devices)[0]["config"] == claim.devices[0].config
        assert json.loads(trace) == claim.trace_context
        # SQLite's own JSON functions can read the columns too.
        (mtu,) = raw.execute(
            "SELECT json_extract(devices, '$[0].config.interface.mtu') FROM claims"
        ).fetchone()
        assert mtu == 9000
        (orig_mtu,) = raw.execute(
            "SELECT json_extract(original, '$.mtu') FROM attachments"
        ).fetchone()
        assert orig_mtu == 1500
    finally:
        raw.close()


@pytest.mark.parametrize("bad", [object(), float("nan"), {1, 2}])
def test_non_json_config_is_refused_and_nothing_written(plugin: Store, bad: object) -> None:
    rec = make_claim("u1")
    dev = dataclasses.replace(rec.devices[0], config={"x": bad})
    with pytest.raises(StoreError, match=r"devices of claim u1 is not JSON"):
        plugin.put_claim(dataclasses.replace(rec, devices=(dev,)))
    assert plugin.counts()["claims"] == 0


def test_non_json_attachment_state_is_refused(agent: Store) -> None:
    rec = dataclasses.replace(make_attachment("u1"), original={"when": time})
    with pytest.raises(StoreError, match=r"original state of attachment u1/pci-0000-3b-00-0"):
        agent.put_attachment(rec)
    assert agent.counts()["attachments"] == 0


def test_put_claim_replaces_by_uid(plugin: Store) -> None:
    plugin.put_claim(make_claim("u1", ("old-pod",)))
    newer = make_claim("u1", ("new-pod",), namespace="other", ndev=2)
    plugin.put_claim(newer)
    assert plugin.list_claims() == [newer]
    assert plugin.claims_for_pod("old-pod") == []
    assert plugin.claims_for_pod("new-pod") == [newer]


def test_delete_claim_reports_whether_it_existed(db: Path, plugin: Store) -> None:
    plugin.put_claim(make_claim("u1", ("p1", "p2")))
    plugin.put_claim(make_claim("u2", ("p1",)))
    assert plugin.delete_claim("u1") is True
    assert plugin.delete_claim("u1") is False
    assert plugin.get_claim("u1") is None
    assert [c.uid for c in plugin.claims_for_pod("p1")] == ["u2"]
    assert plugin.claims_for_pod("p2") == []
    raw = sqlite3.connect(db)
    try:  # no index row outlives its claim
        assert raw.execute("SELECT count(*) FROM claim_pods WHERE claim_uid = 'u1'").fetchone() == (
            0,
        )
    finally:
        raw.close()


def test_claims_for_pod_finds_every_claim_reserved_for_it(plugin: Store) -> None:
    shared_b = make_claim("u3", ("p1", "p2"), namespace="b", name="shared")
    only_p1 = make_claim("u1", ("p1",), namespace="a", name="zeta")
    only_p2 = make_claim("u2", ("p2",), namespace="a", name="alpha")
    for rec in (shared_b, only_p1, only_p2):
        plugin.put_claim(rec)
    assert plugin.claims_for_pod("p1") == [only_p1, shared_b]
    assert plugin.claims_for_pod("p2") == [only_p2, shared_b]
    assert plugin.claims_for_pod("p3") == []


def test_list_claims_is_ordered_by_namespace_name_uid(plugin: Store) -> None:
    recs = [
        make_claim("u9", namespace="b", name="a"),
        make_claim("u2", namespace="a", name="b"),
        make_claim("u1", namespace="a", name="b"),
        make_claim("u5", namespace="a", name="a"),
    ]
    for rec in recs:
        plugin.put_claim(rec)
    assert [c.uid for c in plugin.list_claims()] == ["u5", "u1", "u2", "u9"]


def test_put_attachment_replaces_by_claim_and_device(agent: Store) -> None:
    agent.put_attachment(make_attachment("u1", "d1"))
    agent.put_attachment(make_attachment("u1", "d2"))
    agent.put_attachment(make_attachment("u1", "d1", phase=AttachmentPhase.ATTACHED))
    phases = {(a.device, a.phase) for a in agent.list_attachments()}
    assert phases == {("d1", AttachmentPhase.ATTACHED), ("d2", AttachmentPhase.PENDING)}


def test_list_attachments_filters(agent: Store) -> None:
    rows = [
        make_attachment("c1", "d1", pod_uid="p1"),
        make_attachment("c1", "d2", pod_uid="p1"),
        make_attachment("c2", "d1", pod_uid="p2"),
        make_attachment("c3", "d1", pod_uid="p1"),
    ]
    for rec in reversed(rows):
        agent.put_attachment(rec)

    def keys(**filters: str) -> list[tuple[str, str]]:
        return [(a.claim_uid, a.device) for a in agent.list_attachments(**filters)]

    assert keys() == [("c1", "d1"), ("c1", "d2"), ("c2", "d1"), ("c3", "d1")]
    assert keys(pod_uid="p1") == [("c1", "d1"), ("c1", "d2"), ("c3", "d1")]
    assert keys(claim_uid="c1") == [("c1", "d1"), ("c1", "d2")]
    assert keys(pod_uid="p1", claim_uid="c3") == [("c3", "d1")]
    assert keys(pod_uid="p2", claim_uid="c1") == []
    assert keys(pod_uid="nope") == []


def test_delete_attachment_reports_whether_it_existed(agent: Store) -> None:
    agent.put_attachment(make_attachment("u1", "d1"))
    agent.put_attachment(make_attachment("u1", "d2"))
    assert agent.delete_attachment("u1", "d1") is True
    assert agent.delete_attachment("u1", "d1") is False
    assert agent.get_attachment("u1", "d1") is None
    assert [a.device for a in agent.list_attachments()] == ["d2"]


def test_counts_rows_per_table(plugin: Store, agent: Store) -> None:
    assert plugin.counts() == {"claims": 0, "attachments": 0}
    for i in range(3):
        plugin.put_claim(make_claim(f"u{i}"))
    agent.put_attachment(make_attachment("u0"))
    assert plugin.counts() == {"claims": 3, "attachments": 1}
    assert agent.counts() == {"claims": 3, "attachments": 1}


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        (make_attachment(""), "attachment claim uid must be a non-empty string"),
        (make_attachment("u1", ""), "device of attachment for claim u1"),
        (make_attachment("u1", pod_uid=""), "pod uid of attachment u1/"),
        (
            dataclasses.replace(make_attachment("u1"), phase="gone"),  # type: ignore[arg-type]
            "phase 'gone' is not one of pending, moved, attached",
        ),
    ],
)
def test_malformed_attachment_is_refused(agent: Store, rec: object, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        agent.put_attachment(rec)  # type: ignore[arg-type]
    assert agent.counts()["attachments"] == 0


def test_claim_without_uid_or_with_empty_pod_is_refused(plugin: Store) -> None:
    with pytest.raises(StoreError, match="claim uid must be a non-empty string"):
        plugin.put_claim(make_claim(""))
    with pytest.raises(StoreError, match="pod uid of claim u1"):
        plugin.put_claim(make_claim("u1", ("p1", "")))
    assert plugin.counts()["claims"] == 0


def test_missing_rows_read_as_none(plugin: Store) -> None:
    assert plugin.get_claim("nope") is None
    assert plugin.get_attachment("nope", "d") is None


def test_closed_store_says_so(db: Path) -> None:
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as store:
        store.put_claim(make_claim("u1"))
    with pytest.raises(StoreError, match=rf"claim-state store {db} is closed"):
        store.get_claim("u1")
    with pytest.raises(StoreError, match="is closed"):
        store.put_claim(make_claim("u2"))
    store.close()  # closing twice is harmless


async def test_one_store_is_safe_across_worker_threads(plugin: Store) -> None:
    recs = [make_claim(f"u{i:02d}", (f"p{i % 3}",)) for i in range(40)]
    await asyncio.gather(*(asyncio.to_thread(plugin.put_claim, r) for r in recs))
    listed = await asyncio.to_thread(plugin.list_claims)
    assert sorted(c.uid for c in listed) == [r.uid for r in recs]
    for_p1 = await asyncio.to_thread(plugin.claims_for_pod, "p1")
    assert {c.uid for c in for_p1} == {r.uid for r in recs if r.pod_uids == ("p1",)}
