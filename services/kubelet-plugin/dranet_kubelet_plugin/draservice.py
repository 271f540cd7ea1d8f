"""The DRA kubelet service (`DRAPlugin` v1 and v1beta1) and its seam to the prepare logic.

This module only translates: kubelet requests become `ClaimRef`s, the
`Preparer`'s outcomes become responses. It guarantees the kubelet's response
rules whatever the Preparer returns: exactly one entry per requested claim
UID, never an unknown UID. Calls may arrive concurrently (the kubelet starts
pods in parallel); calls that share a claim UID run one after the other,
others run side by side.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc

from dranet import errors
from dranet.errors import DranetError
from dranet.kubelet.dra.v1 import api_pb2 as v1_pb2
from dranet.kubelet.dra.v1 import api_pb2_grpc as v1_grpc
from dranet.kubelet.dra.v1beta1 import api_pb2 as v1beta1_pb2
from dranet.kubelet.dra.v1beta1 import api_pb2_grpc as v1beta1_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class ClaimRef:
    """A ResourceClaim as the kubelet names it."""

    uid: str
    namespace: str
    name: str


@dataclass(frozen=True)
class PreparedDeviceRef:
    """One prepared device; `requests` empty means every request of the claim."""

    requests: tuple[str, ...]
    pool: str
    device: str
    cdi_device_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrepareOutcome:
    """The result for one claim: its devices, or an error a user can act on."""

    devices: tuple[PreparedDeviceRef, ...] = ()
    error: str = ""


class Preparer(Protocol):
    async def prepare(self, claims: Sequence[ClaimRef]) -> Mapping[str, PrepareOutcome]:
        """Outcomes keyed by claim UID."""
        ...

    async def unprepare(self, claims: Sequence[ClaimRef]) -> Mapping[str, str]:
        """Errors keyed by claim UID; "" means done."""
        ...


# --- pure conversions -------------------------------------------------------


def internal_error_text(doing: str, exc: BaseException) -> str:
    """What the user sees for a bug: what failed, the exception, where the traceback is."""
    return errors.internal_error_text("kubelet-plugin", doing, exc)


def describe_claims(claims: Sequence[ClaimRef], limit: int = 5) -> str:
    """'claim ns/a' or 'claims ns/a, ns/b' (the first `limit`, then how many more)."""
    names = [f"{c.namespace}/{c.name}" for c in claims[:limit]]
    if len(claims) > limit:
        names.append(f"{len(claims) - limit} more")
    return ("claim " if len(claims) == 1 else "claims ") + ", ".join(names)


def claim_refs(claims: Iterable[Any]) -> list[ClaimRef]:
    """Request claims -> ClaimRefs, first occurrence of a UID kept.

    Raises ValueError for a claim without UID: no answer could be keyed to it.
    """
    refs: list[ClaimRef] = []
    seen: set[str] = set()
    for claim in claims:
        if not claim.uid:
            raise ValueError(
                f"claim {claim.namespace}/{claim.name} has an empty uid; "
                "the kubelet must send the ResourceClaim's metadata.uid"
            )
        if claim.uid not in seen:
            seen.add(claim.uid)
            refs.append(ClaimRef(uid=claim.uid, namespace=claim.namespace, name=claim.name))
    return refs


def request_names(requests: Iterable[str]) -> list[str]:
    """Top-level request names: "req/sub" -> "req", duplicates dropped.

    Containers reference claims by top-level request, so the kubelet matches
    CDI ids against those (as the upstream Go helper does).
    """
    names: list[str] = []
    for request in requests:
        top = request.split("/", 1)[0]
        if top not in names:
            names.append(top)
    return names


def complete_outcomes(
    claims: Sequence[ClaimRef], outcomes: Mapping[str, PrepareOutcome]
) -> dict[str, PrepareOutcome]:
    """One outcome per requested claim: missing ones become errors, unknown ones are dropped."""
    result: dict[str, PrepareOutcome] = {}
    for claim in claims:
        outcome = outcomes.get(claim.uid)
        if outcome is None:
            outcome = PrepareOutcome(
                error=f"internal error: no prepare result for claim "
                f"{claim.namespace}/{claim.name} (uid {claim.uid}); retry or report a bug"
            )
        result[claim.uid] = outcome
    unknown = set(outcomes) - set(result)
    if unknown:
        log.warning("preparer answered for claims not requested, dropped: %s", sorted(unknown))
    return result


def complete_errors(claims: Sequence[ClaimRef], errors: Mapping[str, str]) -> dict[str, str]:
    """One error string ("" = ok) per requested claim; unknown UIDs dropped."""
    result: dict[str, str] = {}
    for claim in claims:
        error = errors.get(claim.uid)
        if error is None:
            error = (
                f"internal error: no unprepare result for claim "
                f"{claim.namespace}/{claim.name} (uid {claim.uid}); retry or report a bug"
            )
        result[claim.uid] = error
    unknown = set(errors) - set(result)
    if unknown:
        log.warning("preparer answered for claims not requested, dropped: %s", sorted(unknown))
    return result


def fill_prepare_response(response: Any, outcomes: Mapping[str, PrepareOutcome]) -> None:
    """Writes outcomes into a v1 or v1beta1 NodePrepareResourcesResponse (same layout)."""
    for uid, outcome in outcomes.items():
        entry = response.claims[uid]  # creating the entry matters even when it stays empty
        if outcome.error:
            entry.error = outcome.error
            continue
        for device in outcome.devices:
            entry.devices.add(
                request_names=request_names(device.requests),
                pool_name=device.pool,
                device_name=device.device,
                cdi_device_ids=list(device.cdi_device_ids),
            )


def fill_unprepare_response(response: Any, errors: Mapping[str, str]) -> None:
    for uid, error in errors.items():
        response.claims[uid].error = error


# --- per-claim serialisation -------------------------------------------------


class ClaimLocks:
    """One lock per claim UID, taken in sorted order so batches cannot deadlock."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def acquire(self, uids: Sequence[str]) -> list[str]:
        """Locks every uid; returns the list to hand back to `release`."""
        ordered = sorted(set(uids))
        for uid in ordered:
            self._users[uid] = self._users.get(uid, 0) + 1
            self._locks.setdefault(uid, asyncio.Lock())
        locked: list[str] = []
        try:
            for uid in ordered:
                await self._locks[uid].acquire()
                locked.append(uid)
        except BaseException:  # cancelled while waiting: give back what we took
            for uid in locked:
                self._locks[uid].release()
            self._forget(ordered)
            raise
        return ordered

    def release(self, uids: Sequence[str]) -> None:
        for uid in uids:
            self._locks[uid].release()
        self._forget(uids)

    def _forget(self, uids: Sequence[str]) -> None:
        for uid in uids:
            self._users[uid] -= 1
            if self._users[uid] == 0:  # idle claims are dropped so the map stays small
                del self._users[uid]
                del self._locks[uid]

    def __len__(self) -> int:
        return len(self._locks)


# --- servicers ---------------------------------------------------------------


class _DRAService:
    """Shared body of the v1 and v1beta1 servicers; `pb` is the message module."""

    version = ""

    def __init__(self, preparer: Preparer, pb: types.ModuleType, locks: ClaimLocks) -> None:
        self._preparer = preparer
        self._pb = pb
        self._locks = locks

    async def _refs(self, request: Any, context: Context) -> list[ClaimRef]:
        try:
            return claim_refs(request.claims)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def _abort(
        self, context: Context, what: str, doing: str, claims: Sequence[ClaimRef], exc: Exception
    ) -> NoReturn:
        if isinstance(exc, DranetError):
            await context.abort(exc.grpc_code, f"{what}: {exc}")
        log.exception("%s (%s) failed unexpectedly", what, self.version)
        # Not grpc's bare "Unexpected <class ...>": say what failed and where to look.
        message = internal_error_text(f"{doing} {describe_claims(claims)}", exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"{what}: {message}")

    async def _prepare(self, request: Any, context: Context) -> Any:
        claims = await self._refs(request, context)
        try:
            return await self._prepare_claims(claims)
        except Exception as exc:
            await self._abort(context, "NodePrepareResources", "preparing", claims, exc)

    async def _prepare_claims(self, claims: Sequence[ClaimRef]) -> Any:
        response = self._pb.NodePrepareResourcesResponse()
        held = await self._locks.acquire([c.uid for c in claims])
        try:
            outcomes = await self._preparer.prepare(claims) if claims else {}
        finally:
            self._locks.release(held)
        completed = complete_outcomes(claims, outcomes)
        for uid, outcome in completed.items():
            if outcome.error:
                log.warning("prepare of claim %s failed: %s", uid, outcome.error)
        fill_prepare_response(response, completed)
        return response

    async def _unprepare(self, request: Any, context: Context) -> Any:
        claims = await self._refs(request, context)
        try:
            return await self._unprepare_claims(claims)
        except Exception as exc:
            await self._abort(context, "NodeUnprepareResources", "unpreparing", claims, exc)

    async def _unprepare_claims(self, claims: Sequence[ClaimRef]) -> Any:
        response = self._pb.NodeUnprepareResourcesResponse()
        held = await self._locks.acquire([c.uid for c in claims])
        try:
            errors = await self._preparer.unprepare(claims) if claims else {}
        finally:
            self._locks.release(held)
        completed = complete_errors(claims, errors)
        for uid, error in completed.items():
            if error:
                log.warning("unprepare of claim %s failed: %s", uid, error)
        fill_unprepare_response(response, completed)
        return response


class DRAPluginV1(_DRAService, v1_grpc.DRAPluginServicer):
    """`k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin` (kubelet 1.34+)."""

    version = "v1"

    def __init__(self, preparer: Preparer, locks: ClaimLocks | None = None) -> None:
        super().__init__(preparer, v1_pb2, locks or ClaimLocks())

    async def NodePrepareResources(
        self, request: v1_pb2.NodePrepareResourcesRequest, context: Context
    ) -> v1_pb2.NodePrepareResourcesResponse:
        response: v1_pb2.NodePrepareResourcesResponse = await self._prepare(request, context)
        return response

    async def NodeUnprepareResources(
        self, request: v1_pb2.NodeUnprepareResourcesRequest, context: Context
    ) -> v1_pb2.NodeUnprepareResourcesResponse:
        response: v1_pb2.NodeUnprepareResourcesResponse = await self._unprepare(request, context)
        return response


class DRAPluginV1beta1(_DRAService, v1beta1_grpc.DRAPluginServicer):
    """`k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin` (kubelet 1.32/1.33)."""

    version = "v1beta1"

    def __init__(self, preparer: Preparer, locks: ClaimLocks | None = None) -> None:
        super().__init__(preparer, v1beta1_pb2, locks or ClaimLocks())

    async def NodePrepareResources(
        self, request: v1beta1_pb2.NodePrepareResourcesRequest, context: Context
    ) -> v1beta1_pb2.NodePrepareResourcesResponse:
        response: v1beta1_pb2.NodePrepareResourcesResponse = await self._prepare(request, context)
        return response

    async def NodeUnprepareResources(
        self,
        request: v1beta1_pb2.NodeUnprepareResourcesRequest,
        context: Context,
    ) -> v1beta1_pb2.NodeUnprepareResourcesResponse:
        response: v1beta1_pb2.NodeUnprepareResourcesResponse = await self._unprepare(
            request, context
        )
        return response


def dra_servicer_adder(
    preparer: Preparer, *, v1: bool = True, v1beta1: bool = True
) -> Callable[[grpc.aio.Server], None]:
    """A callback registering the DRA services on a server (one lock table for both)."""
    locks = ClaimLocks()

    def add(server: grpc.aio.Server) -> None:
        if v1:
            v1_grpc.add_DRAPluginServicer_to_server(DRAPluginV1(preparer, locks), server)
        if v1beta1:
            v1beta1_grpc.add_DRAPluginServicer_to_server(DRAPluginV1beta1(preparer, locks), server)

    return add
