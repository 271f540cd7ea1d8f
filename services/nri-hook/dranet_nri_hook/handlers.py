"""Pod events -> calls to the netlink agent. The hook writes no state store.

The only memory is each pod's newest sandbox: its id and netns path (from
RunPodSandbox and Synchronize), because containerd 1.7 sends no netns on
StopPodSandbox, and because the agent detaches by pod uid: when a pod's
sandbox is replaced, the kubelet removes the old one later, and that must not
take the devices away from the new one. Every
agent call has a deadline well inside the runtime's 2 s request budget: a
missed budget silently disconnects the plugin and the pod starts without its
devices, so failing loudly is better than being late. When the agent cannot
be reached at all, RunPodSandbox reads the claim-state store (read-only, see
`claimcheck`) so pods without dranet claims still start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from dranet.agent.v1 import agent_pb2
from dranet.errors import DranetError, PeerError, RefusedError, internal_error_text
from dranet.logs import log_context
from dranet.metrics import Metrics
from dranet.nri import api_pb2
from dranet.telemetry import pod_attributes
from dranet_nri_hook.claimcheck import pod_has_no_claims
from dranet_nri_hook.ttrpc import current_call

log = logging.getLogger(__name__)
tracer = trace.get_tracer("dranet_nri_hook")

NETWORK_NAMESPACE = "network"
# Share of the runtime's per-request budget an agent call may use: the rest
# is for our own work and the reply, so we answer before the runtime gives up.
BUDGET_SHARE = 0.75


def call_timeout(configured: float, budget: float | None) -> float:
    """The agent deadline: the configured one, cut to fit the runtime's budget."""
    return configured if not budget else min(configured, budget * BUDGET_SHARE)


def pod_netns(pod: api_pb2.PodSandbox) -> str:
    """Path of the pod's network namespace; '' for host-network pods."""
    for ns in pod.linux.namespaces:
        if ns.type == NETWORK_NAMESPACE:
            return ns.path
    return ""


def pod_ref(pod: api_pb2.PodSandbox) -> agent_pb2.PodRef:
    return agent_pb2.PodRef(uid=pod.uid, namespace=pod.namespace, name=pod.name)


def pod_label(pod: api_pb2.PodSandbox | agent_pb2.PodRef) -> str:
    return f"{pod.namespace}/{pod.name}"


def stale_attachments(
    attachments: Sequence[agent_pb2.Attachment], live_uids: set[str]
) -> list[agent_pb2.Attachment]:
    """One attachment per pod that no longer has a sandbox."""
    seen: set[str] = set()
    out = []
    for att in attachments:
        if att.pod.uid not in live_uids and att.pod.uid not in seen:
            seen.add(att.pod.uid)
            out.append(att)
    return out


def agent_failure(call: str, pod: str, err: grpc.aio.AioRpcError, timeout: float) -> PeerError:
    """A clear error from an agent RPC failure; the agent's own text is kept."""
    code = err.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerError(
            # The budget-cut deadline is a float like 1.49992: show 1.5.
            f"dranet: {call} for pod {pod} timed out after {round(timeout, 2):g}s",
            hint="the netlink agent is slow, stuck or not running; check its container and logs",
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerError(
            f"dranet: netlink agent unreachable for {call} of pod {pod}: {err.details()}",
            hint="check that the netlink-agent container is running",
        )
    return PeerError(err.details() or f"dranet: {call} for pod {pod} failed ({code.name})")


def internal_error(doing: str, exc: Exception) -> DranetError:
    """A bug's error as the runtime shows it: what failed, the exception, where to look."""
    return DranetError("dranet: " + internal_error_text("nri-hook", doing, exc))


@contextlib.contextmanager
def _explained(doing: str) -> Iterator[None]:
    """Re-raises an unexpected exception as `internal_error`: the runtime shows a
    plugin's error text verbatim, and a bare "KeyError: 'x'" helps nobody."""
    try:
        yield
    except DranetError:
        raise
    except Exception as exc:
        log.exception("internal error while %s", doing)
        raise internal_error(doing, exc) from exc


class PodHandlers:
    """Implements plugin.PodEvents against the agent's gRPC API."""

    def __init__(
        self,
        agent: Any,
        *,
        timeout: float = 1.5,
        metrics: Metrics | None = None,
        state_db: str = "",
    ) -> None:
        # `agent` is an agent_pb2_grpc.NetlinkAgentStub (or a test double);
        # `state_db` is the claim-state store read when the agent is unreachable.
        self._agent = agent
        self._timeout = timeout
        self._state_db = state_db
        self._metrics = metrics if metrics is not None else Metrics(CollectorRegistry())  # unserved
        self._detach_failures = self._metrics.counter(
            "nri_detach_failures_total",
            "DetachPod calls that failed (the pod's teardown went on), by NRI event.",
            ("event",),
        )
        # pod uid -> (sandbox id, netns path) of the pod's newest sandbox
        self._sandboxes: dict[str, tuple[str, str]] = {}

    @property
    def _deadline(self) -> float:
        call = current_call.get()
        return call_timeout(self._timeout, call.timeout if call else None)

    def remembered_netns(self, uid: str) -> str:
        return self._sandboxes.get(uid, ("", ""))[1]

    def _replaced(self, pod: api_pb2.PodSandbox, event: str) -> bool:
        """True for an older sandbox of a pod whose newer sandbox we know of."""
        sandbox_id, _ = self._sandboxes.get(pod.uid, (pod.id, ""))
        if sandbox_id == pod.id or not pod.id:
            return False
        log.info(
            "%s: sandbox %.12s of pod %s was replaced by %.12s; its devices stay",
            event, pod.id, pod_label(pod), sandbox_id,
        )  # fmt: skip
        return True

    @contextlib.contextmanager
    def _event(self, event: str, pod: api_pb2.PodSandbox, netns: str) -> Iterator[_Outcome]:
        """Log keys, a span `nri.<event>` and the event's count and latency; the
        result is "error" when the block raises or sets `failed`."""
        outcome = _Outcome()
        start = time.monotonic()
        result = "error"
        try:
            with (
                log_context(pod=pod_label(pod), pod_uid=pod.uid),
                tracer.start_as_current_span(f"nri.{event}", attributes=pod_attributes(pod, netns)),
            ):
                yield outcome
            result = "error" if outcome.failed else "ok"
        finally:
            self._metrics.observe_event(f"nri.{event}", result, time.monotonic() - start)

    async def run_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None:
        netns = pod_netns(pod)
        with (
            self._event("RunPodSandbox", pod, netns),
            _explained(f"attaching devices to pod {pod_label(pod)}"),
        ):
            self._sandboxes[pod.uid] = (pod.id, netns)
            request = agent_pb2.AttachPodRequest(pod=pod_ref(pod), netns_path=netns)
            deadline = self._deadline
            try:
                reply = await self._agent.AttachPod(request, timeout=deadline, wait_for_ready=True)
            except grpc.aio.AioRpcError as err:
                if not netns and err.code() not in _TRANSIENT:
                    raise _host_network(pod, err.details() or err.code().name) from err
                failure = agent_failure("AttachPod", pod_label(pod), err, deadline)
                # No answer (down, stuck, died mid-call): a pod without claims
                # needs no agent. An answered error stands; gRPC cannot tell an
                # agent's own UNAVAILABLE apart, but the store check still keeps
                # a pod with claims from starting.
                if err.code() in _TRANSIENT and await pod_has_no_claims(self._state_db, pod.uid):
                    log.warning(
                        "netlink agent unreachable (%s); pod %s has no prepared claims in %s,"
                        " so it starts", failure, pod_label(pod), self._state_db,
                    )  # fmt: skip
                    return
                raise failure from err
            if not netns and reply.interfaces:
                raise _host_network(pod, "the agent reported devices for it")
            if reply.interfaces:
                names = ", ".join(i.interface_name for i in reply.interfaces)
                log.info("pod %s attached: %s", pod_label(pod), names)

    async def stop_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None:
        netns = pod_netns(pod) or self.remembered_netns(pod.uid)
        with (
            self._event("StopPodSandbox", pod, netns) as outcome,
            _explained(f"detaching devices from pod {pod_label(pod)}"),
        ):
            if self._replaced(pod, "StopPodSandbox"):
                return
            outcome.failed = not await self._detach(pod_ref(pod), netns, "StopPodSandbox")

    async def remove_pod_sandbox(self, pod: api_pb2.PodSandbox) -> None:
        # Idempotent fallback for a missed or failed Stop; the netns may be gone.
        netns = pod_netns(pod) or self.remembered_netns(pod.uid)
        with (
            self._event("RemovePodSandbox", pod, netns) as outcome,
            _explained(f"detaching devices from pod {pod_label(pod)}"),
        ):
            if self._replaced(pod, "RemovePodSandbox"):
                return
            outcome.failed = not await self._detach(pod_ref(pod), netns, "RemovePodSandbox")
            self._sandboxes.pop(pod.uid, None)

    async def _detach(self, ref: agent_pb2.PodRef, netns: str, event: str) -> bool:
        """Never raises: teardown must not be blocked by us; False when it failed.
        A failure marks the current span as failed and counts in
        `dranet_nri_detach_failures_total`."""
        deadline = self._deadline
        try:
            reply = await self._agent.DetachPod(
                agent_pb2.DetachPodRequest(pod=ref, netns_path=netns),
                timeout=deadline,
                wait_for_ready=True,
            )
        except grpc.aio.AioRpcError as err:
            failure = agent_failure("DetachPod", pod_label(ref), err, deadline)
            log.warning("%s (the pod's teardown continues)", failure)
            span = trace.get_current_span()
            span.record_exception(failure)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(failure)))
            self._detach_failures.labels(event).inc()
            return False
        for dev in reply.devices:
            log.info(
                "pod %s: device %s %s", pod_label(ref), dev.device,
                agent_pb2.DetachedDevice.Outcome.Name(dev.outcome),
            )  # fmt: skip
        return True

    async def synchronize(
        self, pods: Sequence[api_pb2.PodSandbox], containers: Sequence[api_pb2.Container]
    ) -> None:
        """Reconcile with the agent; logs problems, never fails the sync.

        Attach is idempotent and returns at once for pods without prepared
        claims; only attachments of pods that are gone are detached, so a
        prepared claim whose pod has no sandbox yet is left alone.
        """
        attributes = {"dranet.nri.pods": len(pods), "dranet.nri.containers": len(containers)}
        with (
            tracer.start_as_current_span("nri.Synchronize", attributes=attributes),
            self._metrics.time_event("nri.Synchronize"),
            _explained(f"synchronizing {len(pods)} pods with the netlink agent"),
        ):
            self._remember(pods)
            try:
                async with asyncio.timeout(self._deadline):
                    await self._reconcile(pods)
            except TimeoutError:
                log.warning("synchronize: reconciliation cut short after %gs", self._deadline)

    def _remember(self, pods: Sequence[api_pb2.PodSandbox]) -> None:
        """Running sandboxes (stopped ones come with no netns) become the pods'
        newest; pods the runtime no longer has are forgotten (their Remove was
        missed while we were away)."""
        live = {pod.uid for pod in pods}
        self._sandboxes = {uid: sb for uid, sb in self._sandboxes.items() if uid in live}
        for pod in pods:
            if pod_netns(pod):
                self._sandboxes[pod.uid] = (pod.id, pod_netns(pod))

    async def _reconcile(self, pods: Sequence[api_pb2.PodSandbox]) -> None:
        live = {pod.uid for pod in pods}
        try:
            listed = await self._agent.ListAttachments(
                agent_pb2.ListAttachmentsRequest(), timeout=self._deadline, wait_for_ready=True
            )
            stale = stale_attachments(listed.attachments, live)
        except grpc.aio.AioRpcError as err:
            log.warning("synchronize: cannot list attachments: %s", err.details())
            stale = []
        attaches = [self._attach_quietly(pod) for pod in pods if pod_netns(pod)]
        detaches = [self._detach(att.pod, att.netns_path, "Synchronize") for att in stale]
        await asyncio.gather(*attaches, *detaches)

    async def _attach_quietly(self, pod: api_pb2.PodSandbox) -> None:
        try:
            await self._agent.AttachPod(
                agent_pb2.AttachPodRequest(pod=pod_ref(pod), netns_path=pod_netns(pod)),
                timeout=self._deadline,
                wait_for_ready=True,
            )
        except grpc.aio.AioRpcError as err:
            log.warning("synchronize: AttachPod for pod %s: %s", pod_label(pod), err.details())


@dataclass
class _Outcome:
    failed: bool = False


_TRANSIENT = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


def _host_network(pod: api_pb2.PodSandbox, detail: str) -> RefusedError:
    return RefusedError(
        f"RunPodSandbox pod {pod_label(pod)} uses the host network, so dranet cannot move"
        f" devices into it: {detail}",
        hint="remove the pod's dranet resource claims or set hostNetwork: false",
    )
