"""The claim-state store on a real file: WAL, synchronous=FULL, one transaction per write.

Every write is one `BEGIN IMMEDIATE ... COMMIT` with an fsync of the WAL, so a
write costs about one disk flush; an attach writes its row three times
(pending, moved, attached) and a detach deletes it once. `claims_for_pod` is
the agent's first read for every pod that starts on the node.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dranet.store import AttachmentPhase, Role, Store

from .workloads import attachment_record, claim_record

pytestmark = pytest.mark.benchmark(group="store")
BOOT = "boot-bench"
PODS = 250  # a full node (kubelet's default max-pods is 110; big nodes run more)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def plugin_store(db_path: Path) -> Iterator[Store]:
    with Store(db_path, role=Role.PLUGIN, boot_id=BOOT) as store:
        yield store


@pytest.fixture
def agent_store(db_path: Path, plugin_store: Store) -> Iterator[Store]:
    with Store(db_path, role=Role.AGENT, boot_id=BOOT) as store:
        yield store


def test_put_claim(benchmark: BenchmarkFixture, plugin_store: Store) -> None:
    """One prepared claim (one NIC, full config) written durably."""
    counter = itertools.count()

    def put() -> str:
        i = next(counter)
        rec = claim_record(i, f"pod-{i:06d}")
        plugin_store.put_claim(rec)
        return rec.uid

    last = benchmark(put)
    written = next(counter)  # one more than the writes done
    assert plugin_store.counts()["claims"] == written
    got = plugin_store.get_claim(last)
    assert got is not None and got.devices[0].config["interface"]["mtu"] == 9000


def test_claims_for_pod(benchmark: BenchmarkFixture, plugin_store: Store) -> None:
    """Lookup among a full node's claims; the pod has two."""
    for i in range(PODS):
        plugin_store.put_claim(claim_record(i, f"pod-{i:06d}"))
    plugin_store.put_claim(claim_record(PODS, "pod-000042"))
    found = benchmark(plugin_store.claims_for_pod, "pod-000042")
    # Ordered by namespace, name, uid: "trainer-250-nic" sorts before "trainer-42-nic".
    assert [c.uid for c in found] == [f"claim-{PODS:06d}", "claim-000042"]
    assert found[1].devices[0].config["interface"]["addresses"][0] == "192.168.42.2/24"


def test_put_attachment(benchmark: BenchmarkFixture, agent_store: Store) -> None:
    """The agent's write-ahead row, cycling through the phases of one attach."""
    phases = itertools.cycle(list(AttachmentPhase))
    records = {p: attachment_record(7, p) for p in AttachmentPhase}

    def put() -> AttachmentPhase:
        phase = next(phases)
        agent_store.put_attachment(records[phase])
        return phase

    last = benchmark(put)
    (row,) = agent_store.list_attachments(pod_uid="pod-000007")
    assert row.phase == last and row.boot_id == BOOT
    assert row.original == records[last].original
