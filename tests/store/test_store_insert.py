"""insert_attachment: the write-ahead row never replaces a recorded host state."""

from __future__ import annotations

import dataclasses

import pytest

from dranet.errors import StoreError
from dranet.store import AttachmentPhase, Store

from .store_helpers import make_attachment


def test_insert_refuses_to_replace_an_existing_row(agent: Store) -> None:
    first = make_attachment("c1", phase=AttachmentPhase.ATTACHED)
    agent.insert_attachment(first)
    newer = dataclasses.replace(
        first, pod_uid="pod-b", phase=AttachmentPhase.PENDING, original={"ifname": "other"}
    )

    with pytest.raises(StoreError, match="c1/pci-0000-3b-00-0 already exists"):
        agent.insert_attachment(newer)

    kept = agent.get_attachment("c1", "pci-0000-3b-00-0")
    assert kept is not None
    assert (kept.pod_uid, kept.phase, kept.original) == ("pod-a", first.phase, first.original)


def test_insert_adds_rows_other_keys_do_not_block(agent: Store) -> None:
    agent.insert_attachment(make_attachment("c1"))
    agent.insert_attachment(make_attachment("c1", "pci-0000-3b-00-1"))
    agent.insert_attachment(make_attachment("c2"))
    assert [(r.claim_uid, r.device) for r in agent.list_attachments()] == [
        ("c1", "pci-0000-3b-00-0"),
        ("c1", "pci-0000-3b-00-1"),
        ("c2", "pci-0000-3b-00-0"),
    ]
    agent.delete_attachment("c1", "pci-0000-3b-00-0")
    agent.insert_attachment(make_attachment("c1"))  # free again once deleted
    assert agent.get_attachment("c1", "pci-0000-3b-00-0") is not None


def test_only_the_agent_inserts_attachments(plugin: Store) -> None:
    with pytest.raises(StoreError, match="may not write attachments"):
        plugin.insert_attachment(make_attachment("c1"))
