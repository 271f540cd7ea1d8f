"""What attach spans and metrics say about a pod, a device and a failure.

`span_attributes` (built on the shared `dranet.telemetry.pod_attributes`)
are the OpenTelemetry attributes of the "attach device" spans (pod, claim,
device, interface name, netns path); `failed_step` is the label an attach failure is counted
under (the step's name, the kind of refusal, "cancelled" or "internal").
"""

from __future__ import annotations

import asyncio

from dranet.errors import DranetError, NetworkStepError
from dranet.store import ClaimRecord
from dranet.telemetry import pod_attributes
from dranet_netlink_agent.plan import PodRef


def span_attributes(
    pod: PodRef, claim: ClaimRecord, device: str, ifname: str, netns_path: str = ""
) -> dict[str, str]:
    return {
        **pod_attributes(pod, netns_path),
        "dranet.claim.uid": claim.uid,
        "dranet.claim.name": f"{claim.namespace}/{claim.name}",
        "dranet.device": device,
        "dranet.interface.name": ifname,
    }


def failed_step(exc: BaseException) -> str:
    """The metrics label of a failure: the step's name, or what kind of refusal."""
    if isinstance(exc, NetworkStepError):
        return exc.step
    if isinstance(exc, DranetError):
        return type(exc).__name__.removesuffix("Error").lower() or "error"
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "internal"
