"""Devices -> ResourceSlice bodies, and the plan that turns current slices into them (pure).

Reproduces the upstream resourceslice controller
(k8s.io/dynamic-resource-allocation/resourceslice, v0.36+), for one pool
named after the node and owned by the Node object:

- devices are sorted by name and split into slices of at most 128;
  a pool always has at least one slice, maybe empty ("driver is up, no
  devices" differs from "no pool");
- slice names start with the slice index in hex (`00000-<driver>-<node>-`
  + a random suffix from generateName), which is how a current slice is
  matched with a desired one; slices with an older pool generation, an index
  out of range or a duplicate index are obsolete and deleted first;
- the pool generation is the highest one found; it is kept when at most one
  existing slice needs an update and none has to be created, otherwise it is
  bumped and every matched slice is rewritten with it;
- every slice carries `resourceSliceCount` = number of desired slices.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MAX_DEVICES_PER_SLICE = 128  # ResourceSliceMaxDevices
INDEX_MIN_LENGTH = 5
API_VERSION = "resource.k8s.io/v1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

Body = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The Node that owns the slices (garbage collection deletes them with it)."""

    name: str
    uid: str


@dataclass
class SlicePlan:
    """API calls that make the current slices match the desired ones, in order."""

    delete: list[Body] = field(default_factory=list)
    update: list[Body] = field(default_factory=list)
    create: list[Body] = field(default_factory=list)
    generation: int = 0

    @property
    def empty(self) -> bool:
        return not (self.delete or self.update or self.create)


def device_entry(name: str, attributes: Mapping[str, Mapping[str, Any]]) -> Body:
    """One `spec.devices[]` entry."""
    entry: Body = {"name": name}
    if attributes:
        entry["attributes"] = {key: dict(value) for key, value in sorted(attributes.items())}
    return entry


def split_devices(devices: Iterable[Body]) -> list[list[Body]]:
    """Devices sorted by name in chunks of 128; at least one (maybe empty) chunk.

    Devices whose name is not a DNS label are dropped with a warning: the API
    server would reject the whole slice because of them.
    """
    valid = []
    for device in devices:
        if _DNS_LABEL.match(device["name"]):
            valid.append(device)
        else:
            log.warning("device name %r is not a DNS label; not published", device["name"])
    valid.sort(key=lambda d: str(d["name"]))
    chunks = [
        valid[i : i + MAX_DEVICES_PER_SLICE] for i in range(0, len(valid), MAX_DEVICES_PER_SLICE)
    ]
    return chunks or [[]]


def index_length(slice_count: int) -> int:
    return max(INDEX_MIN_LENGTH, len(format(max(slice_count - 1, 0), "x")))


def encode_index(index: int, length: int) -> str:
    return format(index, f"0{length}x")


def decode_index(name: str, length: int) -> int:
    """The slice index a name starts with, or -1 if it has none of that length."""
    prefix, sep, _ = name.partition("-")
    if not sep or len(prefix) != length:
        return -1
    try:
        return int(prefix, 16)
    except ValueError:
        return -1


def _generation(slice_: Mapping[str, Any]) -> int:
    return int(slice_.get("spec", {}).get("pool", {}).get("generation", 0) or 0)


def _devices_equal(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    return list(a or []) == list(b or [])


def plan_pool(
    *,
    driver: str,
    owner: Owner,
    desired: Sequence[Sequence[Body]],
    current: Sequence[Mapping[str, Any]],
) -> SlicePlan:
    """What to delete, update and create so `current` becomes `desired` (pool = node name)."""
    pool_name = owner.name
    current = [s for s in current if s.get("spec", {}).get("pool", {}).get("name") == pool_name]
    generation = max((_generation(s) for s in current), default=0)
    length = index_length(len(desired))
    matched: dict[int, Mapping[str, Any]] = {}
    plan = SlicePlan()
    for slice_ in current:
        index = decode_index(slice_["metadata"]["name"], length)
        if _generation(slice_) < generation or not 0 <= index < len(desired) or index in matched:
            plan.delete.append(dict(slice_))
        else:
            matched[index] = slice_
    desired_pool = {"name": pool_name, "generation": generation, "resourceSliceCount": len(desired)}
    changed = {
        i
        for i, slice_ in matched.items()
        if slice_["spec"].get("pool") != desired_pool
        or slice_["spec"].get("allNodes")
        or slice_["spec"].get("nodeSelector")
        or not _devices_equal(slice_["spec"].get("devices", []), desired[i])
    }
    new = len(desired) - len(matched)
    bumped = not (new == 0 and len(changed) <= 1)
    if bumped:
        generation += 1
    plan.generation = generation
    desired_pool["generation"] = generation
    for i in sorted(matched):
        if i not in changed and not bumped:
            continue
        body = copy.deepcopy(dict(matched[i]))
        # List items come without kind/apiVersion; a PUT body names them.
        body["apiVersion"] = API_VERSION
        body["kind"] = "ResourceSlice"
        body["spec"]["pool"] = dict(desired_pool)
        body["spec"].pop("allNodes", None)
        body["spec"].pop("nodeSelector", None)
        body["spec"]["devices"] = copy.deepcopy(list(desired[i]))
        plan.update.append(body)
    for i in range(len(desired)):
        if i in matched:
            continue
        plan.create.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ResourceSlice",
                "metadata": {
                    "generateName": f"{encode_index(i, length)}-{driver}-{owner.name}-",
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": owner.name,
                            "uid": owner.uid,
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    "driver": driver,
                    "pool": dict(desired_pool),
                    "nodeName": owner.name,
                    "devices": copy.deepcopy(list(desired[i])),
                },
            }
        )
    return plan
