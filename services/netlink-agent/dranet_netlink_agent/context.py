"""What attach, detach and recovery share: the store, the device resolver, the node.

`Resolver` is the slice of the inventory they need, so tests can pass a
small stub. `node_netns` is the namespace whose interfaces are the node's
NICs: None (the agent's own, as deployed with hostNetwork) or a path (tests
run the agent in-process against a throwaway "node" namespace).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Counter

from dranet.metrics import Metrics
from dranet.store import AttachmentRecord, Store
from dranet.telemetry import tracer
from dranet_netlink_agent.linkops import own_netns_fd
from dranet_netlink_agent.netns import NetnsId, netns_id, open_netns
from dranet_netlink_agent.netnspaths import DEFAULT_ROOTS

log = logging.getLogger("dranet.agent")


class NetDeviceLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ifname(self) -> str: ...
    @property
    def ifindex(self) -> int: ...
    @property
    def permanent_mac(self) -> str: ...
    @property
    def pci_address(self) -> str: ...
    @property
    def virtual(self) -> bool: ...


class Resolver(Protocol):
    """Finds node devices by DRA name or identity; the inventory implements it."""

    def find(self, name: str) -> NetDeviceLike | None: ...
    def find_by(
        self, *, permanent_mac: str = "", pci_address: str = "", ifname: str = ""
    ) -> NetDeviceLike | None: ...
    def is_uplink(self, ifname: str) -> bool: ...
    async def rescan(self) -> None: ...


def _no_checkpoint(point: str) -> None:
    return None


def _no_listener(kind: str, rec: AttachmentRecord) -> None:
    return None


@dataclass
class AgentMetrics:
    """The agent's own metrics (the shared ones live in dranet.metrics)."""

    attach_failures: Counter
    detach_failures: Counter

    @classmethod
    def create(cls, metrics: Metrics | None = None) -> AgentMetrics:
        m = metrics if metrics is not None else Metrics(CollectorRegistry())  # unserved
        return cls(
            attach_failures=m.counter(
                "attach_failures_total", "Device attaches that failed, by step.", ("step",)
            ),
            detach_failures=m.counter(
                "detach_failures_total", "Device give-backs that failed, by step.", ("step",)
            ),
        )


@dataclass
class AgentContext:
    store: Store
    resolver: Resolver
    node_netns: str | None = None
    netns_roots: tuple[str, ...] = DEFAULT_ROOTS
    sysctl_root: str = "/proc/sys"
    # Test hook: called with "pending"/"moved" at the crash points (see settings).
    checkpoint: Callable[[str], None] = _no_checkpoint
    # Called with ("attached"|"detached", record) after each change.
    listener: Callable[[str, AttachmentRecord], None] = _no_listener
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tracer: Tracer = field(default_factory=lambda: tracer("dranet.netlink-agent"))
    metrics: AgentMetrics = field(default_factory=AgentMetrics.create)

    def node_fd(self) -> int:
        """A fresh fd of the node namespace (the caller closes it)."""
        return own_netns_fd() if self.node_netns is None else open_netns(self.node_netns)

    def host_netns_ids(self) -> dict[NetnsId, str]:
        """Namespaces that are never a pod's: the node's and the agent's own."""
        fd = self.node_fd()
        try:
            ids = {netns_id(fd): "the node's network namespace"}
        finally:
            os.close(fd)
        own = os.stat("/proc/self/ns/net")
        ids.setdefault((own.st_dev, own.st_ino), "the agent's own network namespace")
        return ids

    async def put(self, rec: AttachmentRecord) -> None:
        await asyncio.to_thread(self.store.put_attachment, rec)

    async def insert(self, rec: AttachmentRecord) -> None:
        """The write-ahead row: StoreError if the (claim, device) already has one."""
        await asyncio.to_thread(self.store.insert_attachment, rec)

    async def delete(self, rec: AttachmentRecord) -> None:
        await asyncio.to_thread(self.store.delete_attachment, rec.claim_uid, rec.device)

    async def rows(
        self, *, pod_uid: str | None = None, claim_uid: str | None = None
    ) -> list[AttachmentRecord]:
        return await asyncio.to_thread(
            self.store.list_attachments, pod_uid=pod_uid, claim_uid=claim_uid
        )
