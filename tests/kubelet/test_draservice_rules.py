"""Pure conversion rules of the DRA service (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from dranet.kubelet.dra.v1 import api_pb2 as v1_pb2
from dranet.kubelet.dra.v1beta1 import api_pb2 as v1beta1_pb2
from dranet_kubelet_plugin.draservice import (
    ClaimLocks,
    ClaimRef,
    PreparedDeviceRef,
    PrepareOutcome,
    claim_refs,
    complete_errors,
    complete_outcomes,
    fill_prepare_response,
    request_names,
)

A = ClaimRef(uid="uid-a", namespace="ns", name="a")
B = ClaimRef(uid="uid-b", namespace="ns", name="b")


def test_claim_refs_keep_first_occurrence_and_order() -> None:
    claims = [
        v1_pb2.Claim(namespace="ns", name="b", uid="uid-b"),
        v1_pb2.Claim(namespace="ns", name="a", uid="uid-a"),
        v1_pb2.Claim(namespace="ns", name="b-again", uid="uid-b"),
    ]
    assert claim_refs(claims) == [B, A]


def test_claim_without_uid_is_rejected_with_its_name() -> None:
    with pytest.raises(ValueError, match="claim ns/nameless has an empty uid"):
        claim_refs([v1_pb2.Claim(namespace="ns", name="nameless")])


def test_request_names_drop_subrequests_and_duplicates() -> None:
    assert request_names(["net/fast", "net/slow", "gpu", "net"]) == ["net", "gpu"]
    assert request_names([]) == []


def test_missing_outcome_becomes_a_claim_error_and_unknown_is_dropped() -> None:
    done = complete_outcomes([A, B], {"uid-a": PrepareOutcome(), "uid-z": PrepareOutcome()})
    assert list(done) == ["uid-a", "uid-b"]
    assert done["uid-a"] == PrepareOutcome()
    assert "no prepare result for claim ns/b (uid uid-b)" in done["uid-b"].error


def test_missing_unprepare_error_is_reported_and_unknown_dropped() -> None:
    done = complete_errors([A, B], {"uid-b": "", "uid-z": "boom"})
    assert done["uid-b"] == ""
    assert "no unprepare result for claim ns/a" in done["uid-a"]
    assert "uid-z" not in done


@pytest.mark.parametrize("pb", [v1_pb2, v1beta1_pb2], ids=["v1", "v1beta1"])
def test_fill_prepare_response_maps_devices_and_errors(pb: object) -> None:
    response = pb.NodePrepareResourcesResponse()  # type: ignore[attr-defined]
    device = PreparedDeviceRef(
        requests=("net/sub", "net"), pool="node-1", device="eth9", cdi_device_ids=("v/c=x",)
    )
    fill_prepare_response(
        response,
        {
            "ok": PrepareOutcome(devices=(device,)),
            "empty": PrepareOutcome(),
            "bad": PrepareOutcome(devices=(device,), error="interface.mtu: 40 is below 68"),
        },
    )
    assert set(response.claims) == {"ok", "empty", "bad"}
    (wire,) = response.claims["ok"].devices
    assert list(wire.request_names) == ["net"]
    assert (wire.pool_name, wire.device_name) == ("node-1", "eth9")
    assert list(wire.cdi_device_ids) == ["v/c=x"]
    assert response.claims["ok"].error == ""
    assert len(response.claims["empty"].devices) == 0
    # A failed claim carries only its error: the kubelet ignores devices then anyway.
    assert response.claims["bad"].error == "interface.mtu: 40 is below 68"
    assert len(response.claims["bad"].devices) == 0


def test_v1_devices_leave_share_id_unset() -> None:
    response = v1_pb2.NodePrepareResourcesResponse()
    fill_prepare_response(
        response, {"u": PrepareOutcome(devices=(PreparedDeviceRef((), "p", "d"),))}
    )
    assert not response.claims["u"].devices[0].HasField("share_id")


async def test_claim_locks_serialise_shared_uids_and_forget_idle_ones() -> None:
    locks = ClaimLocks()
    order: list[str] = []

    async def hold(name: str, uids: list[str], pause: float) -> None:
        held = await locks.acquire(uids)
        order.append(f"{name}+")
        await asyncio.sleep(pause)
        order.append(f"{name}-")
        locks.release(held)

    await asyncio.gather(hold("x", ["b", "a"], 0.05), hold("y", ["a", "c"], 0.0))
    # y shares "a" with x, so it can only start after x finished.
    assert order == ["x+", "x-", "y+", "y-"]
    assert len(locks) == 0


async def test_claim_locks_cancelled_waiter_gives_everything_back() -> None:
    locks = ClaimLocks()
    held = await locks.acquire(["b"])
    # The waiter takes "a", then blocks on "b": cancelling it must release "a".
    waiter = asyncio.create_task(locks.acquire(["a", "b"]))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    locks.release(held)
    assert len(locks) == 0
    async with asyncio.timeout(1):  # nothing left locked
        again = await locks.acquire(["a", "b"])
    locks.release(again)
