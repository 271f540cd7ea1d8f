"""NodePrepareResources / NodeUnprepareResources: the Preparer behind `draservice`.

Prepare, per claim (claims of one call run side by side, each with its own
outcome, so one bad claim never fails the others):

1. GET the ResourceClaim; its UID must be the one the kubelet names (else
   the claim was deleted and re-created: the kubelet must start over).
2. Keep the allocation results whose driver is ours (a claim may mix drivers,
   e.g. a GPU and a NIC aligned on one NUMA node).
3. Each result's pool must be this node's pool and its device one we publish.
4. Resolve its configuration: the allocation's opaque configs for our driver
   whose `requests` is empty or names the result's request (or its parent
   request for "req/sub"). DeviceClass configs (source FromClass) come first,
   then the claim's own (FromClaim), each in list order; they are merged with
   `dranet.netconfig.merge_configs` (objects merge key by key, anything else
   is replaced by the later entry), so a claim setting overrides its class
   and a later entry overrides an earlier one. The result is validated
   strictly with `parse_config`.
5. Write the `claims` row (devices with their canonical config, pods from
   status.reservedFor, the prepare span's W3C context) in one transaction.
   Re-preparing rewrites the same row: prepare is idempotent.

A failure after the claim was read is also reported as a Warning Event
`ClaimPrepareFailed` on the ResourceClaim, so `kubectl describe` shows it.

Unprepare deletes the row, then asks the agent to release whatever of the
claim is still attached. In that order because while the row exists an
AttachPod (a Synchronize, a retried sandbox) may attach the device again; the
release is keyed by claim uid and idempotent, so the kubelet's retry after a
failed release releases again with the row already gone. It never reads the
API server, so it works for unknown claims and for ResourceClaims that are
already gone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace

from dranet import netconfig
from dranet.agent.v1 import agent_pb2
from dranet.errors import ConfigError, DranetError, NotFoundError
from dranet.logs import log_context
from dranet.store import ClaimRecord, PreparedDevice, Store
from dranet.telemetry import current_carrier
from dranet_kubelet_plugin.draservice import (
    ClaimRef,
    PreparedDeviceRef,
    PrepareOutcome,
    internal_error_text,
)
from dranet_kubelet_plugin.kube import Kube

if TYPE_CHECKING:
    from dranet.agent.v1.agent_pb2_grpc import NetlinkAgentAsyncStub

log = logging.getLogger(__name__)
tracer = trace.get_tracer("dranet.kubelet-plugin")

EVENT_REASON = "ClaimPrepareFailed"
Inventory = Callable[[], Awaitable[Collection[str]]]


class ClaimError(DranetError):
    """A claim cannot be prepared; the message is what the user sees."""


# --- pure helpers ------------------------------------------------------------


def our_results(claim: Mapping[str, Any], driver: str) -> list[dict[str, Any]]:
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    return [dict(r) for r in results if r.get("driver") == driver]


def configs_for_result(
    claim: Mapping[str, Any], driver: str, request: str
) -> list[Mapping[str, Any]]:
    """The opaque parameters that apply to one result, class configs first."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    entries = (allocation.get("devices") or {}).get("config") or []
    names = {request, request.split("/", 1)[0]}
    matching: list[tuple[int, int, Mapping[str, Any]]] = []
    for position, entry in enumerate(entries):
        opaque = entry.get("opaque")
        if not opaque or opaque.get("driver") != driver:
            continue  # another driver's, or a config kind only other drivers know
        wanted = entry.get("requests") or []
        if wanted and not names.intersection(wanted):
            continue
        parameters = opaque.get("parameters")
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, Mapping):
            raise ClaimError(
                f"config[{position}].opaque.parameters must be a JSON object, "
                f"got {type(parameters).__name__}"
            )
        source_rank = 0 if entry.get("source") == "FromClass" else 1
        matching.append((source_rank, position, parameters))
    matching.sort(key=lambda item: (item[0], item[1]))
    return [parameters for _, _, parameters in matching]


def resolve_config(
    claim: Mapping[str, Any], driver: str, result: Mapping[str, Any]
) -> dict[str, Any]:
    """The merged, validated, canonical configuration of one result."""
    merged = netconfig.merge_configs(configs_for_result(claim, driver, result["request"]))
    try:
        parsed = netconfig.parse_config(merged)
    except ConfigError as exc:
        raise ClaimError(
            f"device {result['device']} (request {result['request']}): {exc.message}",
            hint="fix the opaque parameters for driver " + driver + " in the claim or its class",
        ) from exc
    if problems := netconfig.unsupported(parsed):
        raise ClaimError(
            f"device {result['device']} (request {result['request']}): "
            + "; ".join(str(p) for p in problems),
            hint="remove the setting from the claim or its class",
        )
    return netconfig.to_json(parsed)


def reserved_pods(claim: Mapping[str, Any]) -> tuple[str, ...]:
    reserved = (claim.get("status") or {}).get("reservedFor") or []
    return tuple(
        str(ref["uid"])
        for ref in reserved
        if ref.get("resource") == "pods" and not ref.get("apiGroup") and ref.get("uid")
    )


def failure_event(
    claim: Mapping[str, Any], message: str, *, driver: str, node: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Warning Event about the claim."""
    meta = claim["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{secrets.token_hex(8)}",
            "namespace": meta["namespace"],
        },
        "involvedObject": {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": EVENT_REASON,
        "message": message[:1024],
        "type": "Warning",
        "source": {"component": driver, "host": node},
        "reportingComponent": driver,
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


# --- the Preparer -------------------------------------------------------------


def claim_attributes(ref: ClaimRef) -> dict[str, str]:
    return {
        "dranet.claim.uid": ref.uid,
        "dranet.claim.name": f"{ref.namespace}/{ref.name}",
        "k8s.namespace.name": ref.namespace,
    }


class ClaimPreparer:
    """Implements `draservice.Preparer` with the API server, the store and the agent."""

    def __init__(
        self,
        *,
        kube: Kube,
        store: Store,
        agent: NetlinkAgentAsyncStub,
        driver: str,
        node_name: str,
        inventory: Inventory,
        agent_timeout: float = 20.0,
    ) -> None:
        self._kube = kube
        self._store = store
        self._agent = agent
        self._driver = driver
        self._node = node_name
        self._inventory = inventory
        self._agent_timeout = agent_timeout

    async def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareOutcome]:
        outcomes = await asyncio.gather(*(self._prepare_one(c) for c in claims))
        return {claim.uid: outcome for claim, outcome in zip(claims, outcomes, strict=True)}

    async def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        errors = await asyncio.gather(*(self._unprepare_one(c) for c in claims))
        return {claim.uid: error for claim, error in zip(claims, errors, strict=True)}

    # --- prepare ------------------------------------------------------------

    async def _prepare_one(self, ref: ClaimRef) -> PrepareOutcome:
        attrs = claim_attributes(ref)
        with (
            log_context(claim=f"{ref.namespace}/{ref.name}", claim_uid=ref.uid),
            tracer.start_as_current_span("prepare claim", attributes=attrs) as span,
        ):
            claim: dict[str, Any] | None = None
            try:
                with tracer.start_as_current_span("get claim", attributes=attrs):
                    claim = await self._read_claim(ref)
                outcome = await self._prepare_claim(ref, claim)
            except DranetError as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                log.warning("prepare %s/%s failed: %s", ref.namespace, ref.name, exc)
                if claim is not None:
                    await self._report(claim, str(exc))
                return PrepareOutcome(error=str(exc))
            except Exception as exc:  # a bug: fail this claim only, and say where to look
                log.exception("prepare %s/%s failed unexpectedly", ref.namespace, ref.name)
                error = internal_error_text(f"preparing claim {ref.namespace}/{ref.name}", exc)
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, error))
                if claim is not None:
                    await self._report(claim, error)
                return PrepareOutcome(error=error)
            return outcome

    async def _read_claim(self, ref: ClaimRef) -> dict[str, Any]:
        try:
            claim = await self._kube.get_claim(ref.namespace, ref.name)
        except NotFoundError as exc:
            raise ClaimError(
                f"ResourceClaim {ref.namespace}/{ref.name} not found",
                hint="it was deleted; the kubelet retries with the current claim",
            ) from exc
        uid = claim.get("metadata", {}).get("uid", "")
        if uid != ref.uid:
            raise ClaimError(
                f"ResourceClaim {ref.namespace}/{ref.name} got replaced: "
                f"the kubelet asked for uid {ref.uid}, the API server has {uid or 'none'}",
                hint="the pod must be re-created with the new claim",
            )
        if not (claim.get("status") or {}).get("allocation"):
            raise ClaimError(f"ResourceClaim {ref.namespace}/{ref.name} is not allocated")
        return claim

    async def _prepare_claim(self, ref: ClaimRef, claim: dict[str, Any]) -> PrepareOutcome:
        results = our_results(claim, self._driver)
        pods = reserved_pods(claim)
        if len(pods) == 1:  # the pod the devices will move into
            trace.get_current_span().set_attribute("k8s.pod.uid", pods[0])
        if len(pods) > 1:
            raise ClaimError(
                f"ResourceClaim {ref.namespace}/{ref.name} is reserved for {len(pods)} pods; "
                "a network device moves into one pod's network namespace only",
                hint="give each pod its own claim (use a ResourceClaimTemplate)",
            )
        published: Collection[str] = ()
        if results:
            try:
                published = await self._inventory()
            except grpc.aio.AioRpcError as exc:
                raise ClaimError(
                    f"cannot read the node's devices from the netlink agent: "
                    f"{exc.code().name}: {exc.details()}",
                    hint="check that the netlink-agent container is running",
                ) from exc
        # The carrier names "prepare claim": the agent's attach span links to it.
        carrier = current_carrier()
        with tracer.start_as_current_span("resolve config", attributes=claim_attributes(ref)):
            devices = self._resolve(claim, results, published)
        record = ClaimRecord(
            uid=ref.uid,
            namespace=ref.namespace,
            name=ref.name,
            pod_uids=pods,
            devices=tuple(devices),
            trace_context=carrier,
        )
        with tracer.start_as_current_span("store claim", attributes=claim_attributes(ref)) as span:
            span.set_attribute("dranet.devices", len(devices))
            await asyncio.to_thread(self._store.put_claim, record)
        log.info(
            "prepared %s/%s: %s",
            ref.namespace,
            ref.name,
            ", ".join(d.device for d in devices) or "no devices of this driver",
        )
        return PrepareOutcome(
            devices=tuple(
                PreparedDeviceRef(requests=(d.request,), pool=d.pool, device=d.device)
                for d in devices
            )
        )

    def _resolve(
        self,
        claim: Mapping[str, Any],
        results: Sequence[Mapping[str, Any]],
        published: Collection[str],
    ) -> list[PreparedDevice]:
        """Each allocated device of ours with its resolved configuration; every problem at once."""
        devices: list[PreparedDevice] = []
        problems: list[str] = []
        for result in results:
            try:
                self._check_published(result, published)
                config = resolve_config(claim, self._driver, result)
            except ClaimError as exc:
                problems.append(str(exc))
                continue
            devices.append(
                PreparedDevice(
                    request=result["request"],
                    pool=result["pool"],
                    device=result["device"],
                    config=config,
                )
            )
        if problems:
            raise ClaimError("; ".join(problems))
        return devices

    def _check_published(self, result: Mapping[str, Any], published: Collection[str]) -> None:
        if result.get("pool") != self._node:
            raise ClaimError(
                f"device {result.get('device')} (request {result.get('request')}) is in pool "
                f"{result.get('pool')!r}, but this node publishes pool {self._node!r}",
            )
        if result.get("device") not in published:
            raise ClaimError(
                f"device {result.get('device')} (request {result.get('request')}) is not "
                f"published on node {self._node}",
                hint="it was removed or filtered out; the scheduler allocates it elsewhere",
            )

    async def _report(self, claim: Mapping[str, Any], message: str) -> None:
        event = failure_event(
            claim, message, driver=self._driver, node=self._node, now=datetime.now(UTC)
        )
        try:
            await self._kube.create_event(claim["metadata"]["namespace"], event)
        except DranetError as exc:  # the kubelet still gets the error
            log.warning("could not record event %s: %s", EVENT_REASON, exc)

    # --- unprepare ------------------------------------------------------------

    async def _unprepare_one(self, ref: ClaimRef) -> str:
        with (
            log_context(claim=f"{ref.namespace}/{ref.name}", claim_uid=ref.uid),
            tracer.start_as_current_span(
                "unprepare claim", attributes=claim_attributes(ref)
            ) as span,
        ):
            try:
                error = await self._release_and_forget(ref)
            except Exception as exc:  # a bug: fail this claim only, and say where to look
                log.exception("unprepare %s/%s failed unexpectedly", ref.namespace, ref.name)
                error = internal_error_text(f"unpreparing claim {ref.namespace}/{ref.name}", exc)
            if error:
                span.set_status(trace.Status(trace.StatusCode.ERROR, error))
            return error

    async def _release_and_forget(self, ref: ClaimRef) -> str:
        # Forget first: without the row no AttachPod can attach the claim again.
        try:
            await asyncio.to_thread(self._store.delete_claim, ref.uid)
        except DranetError as exc:
            return f"removing claim {ref.namespace}/{ref.name} from the store failed: {exc}"
        try:
            await self._agent.ReleaseClaim(
                agent_pb2.ReleaseClaimRequest(claim_uid=ref.uid),
                timeout=self._agent_timeout,
                wait_for_ready=True,  # an agent restarting is waited for, within the deadline
            )
        except grpc.aio.AioRpcError as exc:
            message = (
                f"releasing claim {ref.namespace}/{ref.name} on the netlink agent failed: "
                f"{exc.code().name}: {exc.details()}"
            )
            log.warning("%s", message)
            return message  # the kubelet retries; the release is keyed by uid, not the row
        log.info("unprepared %s/%s", ref.namespace, ref.name)
        return ""
