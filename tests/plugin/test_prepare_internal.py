"""A bug while preparing or unpreparing one claim fails that claim alone, with a clear text.

The kubelet shows the per-claim error to the user (pod events): it must say
what failed and where to look; the other claims of the call are unaffected.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from dranet.store import Store
from dranet_kubelet_plugin.draservice import ClaimRef
from dranet_kubelet_plugin.kube import Kube
from dranet_kubelet_plugin.prepare import ClaimPreparer
from dranet_sandbox.standins.apiserver import FakeApiServer

from .fakes import DRIVER, NODE, AgentServer, claim, result

LOOK = "see the kubelet-plugin container's log"


async def published() -> Collection[str]:
    return {"eth1", "eth2"}


def ref(name: str, uid: str) -> ClaimRef:
    return ClaimRef(uid=uid, namespace="default", name=name)


def preparer_with(kube: Kube, store: Store, agent: Any) -> ClaimPreparer:
    return ClaimPreparer(
        kube=kube, store=store, agent=agent, driver=DRIVER, node_name=NODE, inventory=published
    )


async def test_a_bug_in_one_claim_is_that_claims_error(
    apiserver: FakeApiServer, kube: Kube, store: Store, agent: AgentServer
) -> None:
    bad = claim("bad", "uid-b", results=[result("nic", "eth1")])
    del bad["status"]["allocation"]["devices"]["results"][0]["request"]  # what no scheduler does
    apiserver.put("resourceclaims", bad)
    apiserver.put("resourceclaims", claim("good", "uid-g", results=[result("nic", "eth2")]))
    preparer = preparer_with(kube, store, agent.stub)

    outcomes = await preparer.prepare([ref("bad", "uid-b"), ref("good", "uid-g")])

    error = outcomes["uid-b"].error
    assert error.startswith(
        "internal error in dranet-kubelet-plugin while preparing claim default/bad: "
        "KeyError: 'request'"
    ), error
    assert LOOK in error
    assert outcomes["uid-g"].error == ""
    assert [d.device for d in outcomes["uid-g"].devices] == ["eth2"]
    assert store.get_claim("uid-b") is None


class CrashingAgent:
    """An agent stub whose ReleaseClaim fails with something that is not a gRPC error."""

    async def ReleaseClaim(self, request: Any, **kwargs: Any) -> Any:
        if request.claim_uid == "uid-b":
            raise RuntimeError("channel in a bad state")
        return None


async def test_a_bug_while_unpreparing_one_claim_is_that_claims_error(
    kube: Kube, store: Store
) -> None:
    preparer = preparer_with(kube, store, CrashingAgent())
    errors = await preparer.unprepare([ref("bad", "uid-b"), ref("good", "uid-g")])
    assert errors["uid-b"] == (
        "internal error in dranet-kubelet-plugin while unpreparing claim default/bad: "
        "RuntimeError: channel in a bad state; see the kubelet-plugin container's log "
        "in the dranet pod on this node"
    )
    assert errors["uid-g"] == ""
