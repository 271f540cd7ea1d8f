"""Configuring an interface once it is inside the pod namespace.

Order matters: per-interface sysctls and the VRF enslave happen while the
link is still down (enslaving an up link cycles it, and a down cycle drops
its IPv6 addresses); then addresses, link up, routes (link-scope first),
rules, permanent neighbours, ethtool. Every step is named: a failure raises
NetworkStepError(step, device, reason) and `PodChanges` says what outlives
the link leaving the namespace (rules, a VRF we created) so it can be undone.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from socket import AF_INET, AF_INET6
from typing import Any

from opentelemetry import trace
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dranet.errors import DranetError, NetworkStepError
from dranet.netconfig import NetworkConfig
from dranet_netlink_agent import routing
from dranet_netlink_agent.ethtool import apply_ethtool
from dranet_netlink_agent.hostread import addresses_of, global_addresses
from dranet_netlink_agent.linkops import get_link, set_state, tolerate
from dranet_netlink_agent.netns import Target, arun_in_netns

log = logging.getLogger("dranet.agent")
tracer = trace.get_tracer("dranet.netlink-agent")
STEP_ATTRIBUTE = "dranet.step"


@dataclass
class PodChanges:
    """What an attach left in the pod namespace besides the link itself."""

    rules: list[dict[str, Any]] = field(default_factory=list)
    vrf_created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rules": self.rules, "vrf_created": self.vrf_created}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PodChanges:
        data = data or {}
        return cls(rules=list(data.get("rules", [])), vrf_created=data.get("vrf_created", ""))


def reason(exc: BaseException) -> str:
    """A short reason for an exception, with the errno name for netlink errors."""
    if isinstance(exc, NetlinkError):
        text = os.strerror(exc.code) if exc.code else "netlink error"
        extra = exc.args[1] if len(exc.args) > 1 and exc.args[1] else ""
        return f"{text} (errno {exc.code}){': ' + str(extra) if extra else ''}"
    return str(exc) or type(exc).__name__


@asynccontextmanager
async def step(name: str, device: str) -> AsyncIterator[None]:
    """A span `step <name>` around the block; any failure inside becomes a
    NetworkStepError naming `name` (recorded on the span, status ERROR)."""
    attributes = {STEP_ATTRIBUTE: name, "dranet.device": device}
    with tracer.start_as_current_span(f"step {name}", attributes=attributes):
        try:
            yield
        except DranetError:
            raise
        except Exception as exc:
            raise NetworkStepError(name, device, reason(exc)) from exc


def sysctl_values(cfg: NetworkConfig, ifname: str) -> dict[str, str]:
    """/proc/sys/net paths (relative) -> value for the interface's sysctls."""
    iface = cfg.interface
    out: dict[str, str] = {}
    if iface.forwarding is not None:
        value = "1" if iface.forwarding else "0"
        out[f"ipv4/conf/{ifname}/forwarding"] = value
        out[f"ipv6/conf/{ifname}/forwarding"] = value
    if iface.arp_ignore is not None:
        out[f"ipv4/conf/{ifname}/arp_ignore"] = str(iface.arp_ignore)
    if iface.arp_announce is not None:
        out[f"ipv4/conf/{ifname}/arp_announce"] = str(iface.arp_announce)
    if iface.vrf is not None:
        out["ipv4/tcp_l3mdev_accept"] = "1"
        out["ipv4/udp_l3mdev_accept"] = "1"
    return out


def write_sysctls(values: dict[str, str], sysctl_root: str = "/proc/sys") -> None:
    """Blocking; run inside the pod namespace (its /proc/sys/net is per thread netns).

    `sysctl_root` is where a writable procfs `sys` is: in a container /proc/sys
    is read-only, so the DaemonSet mounts the host's /proc/sys/net elsewhere;
    the kernel still resolves it for the calling thread's namespace.
    """
    for rel, value in values.items():
        with open(f"{sysctl_root}/net/{rel}", "w", encoding="ascii") as f:
            f.write(value)


def pod_addresses(cfg: NetworkConfig, original: dict[str, Any]) -> list[str]:
    """Configured addresses, or the host's own global ones when none are configured."""
    return list(cfg.interface.addresses) or global_addresses(original)


async def configure_pod(
    ipr: AsyncIPRoute,
    netns: Target,
    index: int,
    *,
    cfg: NetworkConfig,
    original: dict[str, Any],
    device: str,
    changes: PodChanges,
    sysctl_root: str = "/proc/sys",
) -> dict[str, Any]:
    """Applies `cfg` to link `index` (down, already in the pod); returns the result."""
    link = await get_link(ipr, index=index)
    if link is None:
        raise NetworkStepError("find link in pod", device, f"no link with index {index}")
    ifname = link["ifname"]
    if cfg.interface.disable_ebpf_programs:
        # The move itself drops the device's qdiscs, so classic TC BPF filters
        # are gone; TCX and XDP programs are not detached by this agent yet.
        log.warning("disableEbpfPrograms: TC filters went with the move; TCX/XDP left as is")
    sysctls = sysctl_values(cfg, ifname)
    if sysctls:
        async with step("sysctls", device):
            await arun_in_netns(netns, lambda: write_sysctls(sysctls, sysctl_root))
    vrf = cfg.interface.vrf
    if vrf is not None:
        async with step("vrf", device):
            vrf_index, created = await routing.ensure_vrf(ipr, vrf.name, vrf.table)
            if created:
                changes.vrf_created = vrf.name
            await ipr.link("set", index=index, master=vrf_index)
    ips = pod_addresses(cfg, original)
    async with step("addresses", device):
        for cidr in ips:
            iface = ipaddress.ip_interface(cidr)
            await tolerate(
                ipr.addr(
                    "add",
                    index=index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    family=AF_INET if iface.version == 4 else AF_INET6,
                ),
                errno.EEXIST,
            )
    async with step("link up", device):
        await set_state(ipr, index, True)
    async with step("routes", device):
        planned = routing.plan_routes(cfg, original.get("routes", []), ips)
        await routing.apply_routes(ipr, index, planned)
    async with step("rules", device):
        carried = {r["table"] for r in planned}
        host_rules = [r for r in original.get("rules", []) if r["table"] in carried]
        rules = routing.plan_rules(cfg, host_rules)
        changes.rules.extend(await routing.apply_rules(ipr, rules))
    async with step("neighbors", device):
        await routing.apply_neighbors(ipr, index, cfg)
        for neigh in original.get("neighbors", []):
            await ipr.neigh(
                "replace",
                dst=neigh["dst"],
                lladdr=neigh["lladdr"],
                ifindex=index,
                state=0x80,
                family=AF_INET if neigh["family"] == 4 else AF_INET6,
            )
    eth = cfg.ethtool
    if eth is not None and (eth.features or eth.private_flags):
        features, flags = dict(eth.features), dict(eth.private_flags)
        async with step("ethtool", device):
            await arun_in_netns(netns, lambda: apply_ethtool(ifname, features, flags))
    return await describe_result(ipr, index)


async def describe_result(ipr: AsyncIPRoute, index: int) -> dict[str, Any]:
    """What the pod interface looks like now: name, MAC, MTU, addresses."""
    link = await get_link(ipr, index=index)
    if link is None:
        return {}
    addrs = await addresses_of(ipr, index)
    return {
        "name": link["ifname"],
        "ifindex": link["ifindex"],  # to find it again if the pod renames it
        "mac": link["mac"],
        "mtu": link["mtu"],
        "ips": [f"{a['address']}/{a['prefixlen']}" for a in addrs],
    }


async def undo_pod_changes(ipr: AsyncIPRoute, changes: PodChanges) -> None:
    """Removes rules and a VRF this agent created in the pod (best effort, idempotent)."""
    await routing.delete_rules(ipr, changes.rules)
    if changes.vrf_created:
        vrf = await get_link(ipr, ifname=changes.vrf_created)
        if vrf is not None:
            slaves = [
                link
                async for link in await ipr.link("dump")
                if link.get("IFLA_MASTER") == vrf["ifindex"]
            ]
            if not slaves:
                await tolerate(ipr.link("del", index=vrf["ifindex"]), errno.ENODEV)
