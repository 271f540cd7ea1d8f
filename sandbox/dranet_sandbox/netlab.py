"""Throwaway network namespaces that stand in for a node, its fabric and pods.

A `NetLab` owns a "node" namespace whose veth ends play the node's NICs, a
"fabric" namespace holding their peers (with addresses, so traffic from a pod
can be checked) and any number of "pod" namespaces. Every name it creates
carries a random prefix, so labs never collide, and `close()` deletes every
namespace it made: the machine's own interfaces are never touched.

Everything here shells out to iproute2 (`ip -j`) on purpose: tests check the
agent's netlink work with an independent tool.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")


def ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs `ip [-n netns] args...`; raises with iproute2's own message on failure."""
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    """`ip -j args...` parsed; [] when iproute2 prints nothing."""
    out = ip("-j", *args, netns=netns).stdout.strip()
    return list(json.loads(out)) if out else []


def netns_exec(netns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs a command inside a namespace (new mount ns with that netns' sysfs)."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, *cmd], check=False, capture_output=True, text=True
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {netns}: {done.stderr.strip() or done.stdout}")
    return done


@dataclass
class Nic:
    """One stand-in NIC: `name` in the node namespace, `peer` in the fabric."""

    name: str
    peer: str
    node_cidr: str | None
    fabric_cidr: str | None


@dataclass
class NetLab:
    """A node, a fabric and pods, as namespaces named `<prefix>-node` etc."""

    prefix: str = field(default_factory=lambda: "dn" + secrets.token_hex(3))
    nics: dict[str, Nic] = field(default_factory=dict)
    pods: list[str] = field(default_factory=list)
    _made: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    @property
    def fabric(self) -> str:
        return f"{self.prefix}-fabric"

    def path(self, netns: str) -> str:
        return str(NETNS_DIR / netns)

    def _add_netns(self, name: str) -> str:
        ip("netns", "add", name)
        self._made.append(name)
        ip("link", "set", "lo", "up", netns=name)
        return name

    def open(self) -> NetLab:
        self._add_netns(self.node)
        self._add_netns(self.fabric)
        return self

    def add_nic(
        self,
        name: str,
        *,
        node_cidr: str | None = None,
        fabric_cidr: str | None = None,
        mtu: int | None = None,
        up: bool = True,
    ) -> Nic:
        """A veth pair: `name` in the node namespace, its peer in the fabric."""
        peer = f"f{len(self.nics)}{secrets.token_hex(2)}"
        ip(
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            self.fabric,
            netns=self.node,
        )
        if mtu:
            ip("link", "set", name, "mtu", str(mtu), netns=self.node)
            ip("link", "set", peer, "mtu", str(mtu), netns=self.fabric)
        if node_cidr:
            ip("addr", "add", node_cidr, "dev", name, netns=self.node)
        if fabric_cidr:
            ip("addr", "add", fabric_cidr, "dev", peer, netns=self.fabric)
        ip("link", "set", peer, "up", netns=self.fabric)
        if up:
            ip("link", "set", name, "up", netns=self.node)
        nic = Nic(name, peer, node_cidr, fabric_cidr)
        self.nics[name] = nic
        return nic

    def add_pod(self, label: str = "pod") -> str:
        """A new pod namespace; returns its name (path: `self.path(name)`)."""
        name = self._add_netns(f"{self.prefix}-{label}{len(self.pods)}")
        self.pods.append(name)
        return name

    def delete_netns(self, name: str) -> None:
        ip("netns", "del", name, check=False)
        if name in self._made:
            self._made.remove(name)

    def link(self, name: str, netns: str) -> dict[str, Any] | None:
        """`ip -j -d link show` of one interface, or None if absent."""
        done = ip("-j", "-d", "link", "show", "dev", name, netns=netns, check=False)
        if done.returncode != 0 or not done.stdout.strip():
            return None
        return dict(json.loads(done.stdout)[0])

    def links(self, netns: str) -> list[dict[str, Any]]:
        return ip_json("-d", "link", "show", netns=netns)

    def close(self) -> None:
        for name in reversed(self._made):
            ip("netns", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> NetLab:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
