"""Planning an attach: which node device each prepared device is, before anything changes.

`resolve` finds the inventory device a claim's prepared device names (one
rescan when it is not known yet) and refuses a device that is not on this
node or is the node uplink; `refuse_foreign` refuses devices another pod
holds. A `Plan` carries the claim, the device and its parsed configuration
into the attach transaction (attach.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dranet.errors import RefusedError
from dranet.netconfig import NetworkConfig, parse_config
from dranet.store import ClaimRecord, PreparedDevice
from dranet_netlink_agent.context import AgentContext, NetDeviceLike


@dataclass(frozen=True)
class PodRef:
    uid: str
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True)
class Plan:
    claim: ClaimRecord
    prepared: PreparedDevice
    device: NetDeviceLike
    config: NetworkConfig

    @property
    def pod_ifname(self) -> str:
        return self.config.interface.name or self.device.ifname


async def resolve(ctx: AgentContext, claim: ClaimRecord, prepared: PreparedDevice) -> Plan:
    where = f"device {prepared.device} of claim {claim.namespace}/{claim.name}"
    found = ctx.resolver.find(prepared.device)
    if found is None:
        await ctx.resolver.rescan()
        found = ctx.resolver.find(prepared.device)
    if found is None:
        other = ctx.resolver.find_by(ifname=prepared.device)
        if other is not None and ctx.resolver.is_uplink(other.ifname):
            found = other  # refused below with the reason
    if found is None:
        raise RefusedError(
            f"{where} is not a device of this node",
            hint="the claim was prepared for a device the agent cannot see; check ListDevices",
        )
    if ctx.resolver.is_uplink(found.ifname):
        raise RefusedError(
            f"{where} is the node uplink {found.ifname}; moving it would cut the node off",
            hint="uplinks are never offered; the allocation is wrong",
        )
    return Plan(claim, prepared, found, parse_config(prepared.config))


async def refuse_foreign(
    ctx: AgentContext, pod: PodRef, wanted: Sequence[tuple[ClaimRecord, PreparedDevice]]
) -> None:
    rows = await ctx.rows()
    for _, prepared in wanted:
        for row in rows:
            if row.device == prepared.device and row.pod_uid != pod.uid:
                raise RefusedError(
                    f"device {row.device} is attached to pod {row.pod_namespace}/{row.pod_name} "
                    f"({row.pod_uid}), not to {pod.namespace}/{pod.name} ({pod.uid})",
                    hint="a device serves one pod at a time; detach the other pod first",
                )
