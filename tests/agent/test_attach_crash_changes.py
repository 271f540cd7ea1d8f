"""Pod-side changes are saved as they are made: recovery after a crash in MOVED removes them.

The crash is simulated by disabling the in-process rollback (as a SIGKILL
would): the row stays MOVED, and start-up recovery must know which rules the
attach had already added to the pod.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dranet.errors import NetworkStepError
from dranet.store import AttachmentPhase, Store
from dranet_netlink_agent import attach
from dranet_netlink_agent.attach import PodRef, SavedPodChanges, attach_pod
from dranet_netlink_agent.context import AgentContext
from dranet_netlink_agent.recovery import reconcile
from dranet_sandbox.netlab import NetLab

pytestmark = pytest.mark.root
POD = PodRef("pod-uid-cc", "default", "cc-0")
CONFIG = {
    "interface": {"name": "net1", "addresses": ["192.168.82.2/24"]},
    "rules": [{"priority": 901, "source": "192.168.82.0/24", "table": 91}],
    "ethtool": {"features": {"no-such-feature": True}},  # fails after the rules step
}


def _extra_rules(kit: Any, pod: str) -> list[dict[str, Any]]:
    return [r for r in kit.rules(pod) if r.get("priority") not in (0, 32766, 32767)]


async def test_recovery_removes_rules_of_a_crashed_attach(
    lab: NetLab,
    ctx: AgentContext,
    plugin_store: Store,
    kit: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab.add_nic("nicC", node_cidr="10.92.0.2/24")
    before = kit.snapshot(lab.node, "nicC")
    pod = lab.add_pod()
    kit.claim(plugin_store, POD.uid, ("nicC", CONFIG))

    async def crashed(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(attach, "_rollback", crashed)
    monkeypatch.setattr(attach, "undo_pod_changes", crashed)
    with pytest.raises(NetworkStepError, match="no-such-feature"):
        await attach_pod(ctx, POD, lab.path(pod))
    monkeypatch.undo()
    (row,) = ctx.store.list_attachments()
    assert row.phase == AttachmentPhase.MOVED
    assert [r["priority"] for r in _extra_rules(kit, pod)] == [901]

    report = await reconcile(ctx)

    assert report.rolled_back == [f"{row.claim_uid}/nicC"]
    assert _extra_rules(kit, pod) == []
    assert kit.pod_links(pod) == ["lo"]
    assert kit.snapshot(lab.node, "nicC") == before


def test_saved_changes_report_every_creation() -> None:
    seen: list[dict[str, Any]] = []
    changes = SavedPodChanges(on_change=lambda c: seen.append(json.loads(json.dumps(c.to_json()))))
    changes.rules.extend([{"priority": 1}])
    changes.vrf_created = "vrf-a"
    changes.rules.append({"priority": 2})
    assert seen == [
        {"rules": [{"priority": 1}], "vrf_created": ""},
        {"rules": [{"priority": 1}], "vrf_created": "vrf-a"},
        {"rules": [{"priority": 1}, {"priority": 2}], "vrf_created": "vrf-a"},
    ]
