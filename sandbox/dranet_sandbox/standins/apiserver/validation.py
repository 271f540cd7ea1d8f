"""What the real API server validates, as pure functions returning Status causes.

ResourceSlices: at most 128 devices, device names DNS labels, qualified
attribute names, one value per attribute, strings at most 64 bytes, at most
32 attributes+capacities per device, driver a DNS subdomain, pool names,
immutable driver/pool/nodeName. ResourceClaim status: status.devices must
name allocated devices, with well-formed conditions and network data.
Events need an involved object. `validate` raises 422 Invalid with the causes.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from dranet_sandbox.standins.apiserver.kinds import Kind, Obj
from dranet_sandbox.standins.apiserver.names import (
    dns_label_problem,
    dns_subdomain_problem,
    qualified_name_problem,
)
from dranet_sandbox.standins.apiserver.status import Cause, invalid

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def _bad(field_path: str, value: Any, why: str) -> Cause:
    return ("FieldValueInvalid", field_path, f"Invalid value: {json.dumps(value)}: {why}")


def _required(field_path: str) -> Cause:
    return ("FieldValueRequired", field_path, "Required value")


def _too_long(field_path: str, limit: int) -> Cause:
    return ("FieldValueTooLong", field_path, f"Too long: may not be more than {limit} bytes")


def validate_device(device: Obj, path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = device.get("name", "")
    if not name:
        causes.append(_required(f"{path}.name"))
    elif problem := dns_label_problem(name):
        causes.append(_bad(f"{path}.name", name, problem))
    attributes = device.get("attributes") or {}
    capacity = device.get("capacity") or {}
    total = len(attributes) + len(capacity)
    if total > 32:
        causes.append(
            (
                "FieldValueTooMany",
                f"{path}.attributes",
                f"Too many: {total}: must have at most 32 items (attributes and capacities)",
            )
        )
    for key, value in attributes.items():
        apath = f"{path}.attributes[{key}]"
        if problem := qualified_name_problem(key):
            causes.append(_bad(apath, key, problem))
        kinds = [k for k in ("int", "bool", "string", "version") if value.get(k) is not None]
        if len(kinds) != 1:
            causes.append(_bad(apath, value, "exactly one value must be specified"))
            continue
        text = value.get("string", value.get("version"))
        if isinstance(text, str) and len(text.encode()) > 64:
            causes.append(_too_long(f"{apath}.{kinds[0]}", 64))
        if kinds[0] == "version" and not _SEMVER.match(str(text)):
            causes.append(
                _bad(
                    f"{apath}.version",
                    text,
                    "must be a string compatible with semver.org spec 2.0.0",
                )
            )
    for key in capacity:
        if problem := qualified_name_problem(key):
            causes.append(_bad(f"{path}.capacity[{key}]", key, problem))
    return causes


def validate_slice(obj: Obj, old: Obj | None = None) -> list[Cause]:
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    driver = spec.get("driver", "")
    if not driver:
        causes.append(_required("spec.driver"))
    elif len(driver) > 63:
        causes.append(_too_long("spec.driver", 63))
    elif problem := dns_subdomain_problem(driver.lower()):
        causes.append(_bad("spec.driver", driver, problem))
    pool = spec.get("pool") or {}
    pool_name = pool.get("name", "")
    if not pool_name:
        causes.append(_required("spec.pool.name"))
    elif len(pool_name) > 253:
        causes.append(_too_long("spec.pool.name", 253))
    else:
        for part in pool_name.split("/"):
            if problem := dns_subdomain_problem(part):
                causes.append(_bad("spec.pool.name", pool_name, problem))
                break
    if int(pool.get("resourceSliceCount") or 0) <= 0:
        causes.append(
            _bad(
                "spec.pool.resourceSliceCount",
                pool.get("resourceSliceCount", 0),
                "must be greater than zero",
            )
        )
    if int(pool.get("generation") or 0) < 0:
        causes.append(
            _bad(
                "spec.pool.generation", pool.get("generation"), "must be greater than or equal to 0"
            )
        )
    selectors = [
        k for k in ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection") if spec.get(k)
    ]
    if len(selectors) != 1:
        causes.append(
            (
                "FieldValueRequired",
                "spec",
                "Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
                "`perDeviceNodeSelection` is required",
            )
        )
    if spec.get("nodeName") and (problem := dns_subdomain_problem(spec["nodeName"])):
        causes.append(_bad("spec.nodeName", spec["nodeName"], problem))
    devices = spec.get("devices") or []
    if len(devices) > 128:
        causes.append(
            (
                "FieldValueTooMany",
                "spec.devices",
                f"Too many: {len(devices)}: must have at most 128 items",
            )
        )
    seen: set[str] = set()
    for i, device in enumerate(devices):
        causes += validate_device(device, f"spec.devices[{i}]")
        name = device.get("name", "")
        if name in seen:
            causes.append(
                ("FieldValueDuplicate", f"spec.devices[{i}].name", f'Duplicate value: "{name}"')
            )
        seen.add(name)
    if old is not None:
        for path in ("driver", "nodeName"):
            if spec.get(path) != old["spec"].get(path):
                causes.append(_bad(f"spec.{path}", spec.get(path), "field is immutable"))
        if pool_name != old["spec"]["pool"]["name"]:
            causes.append(_bad("spec.pool.name", pool_name, "field is immutable"))
    return causes


def validate_claim_status(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    status = obj.get("status") or {}
    results = (((status.get("allocation") or {}).get("devices") or {}).get("results")) or []
    allocated = {(r.get("driver"), r.get("pool"), r.get("device")) for r in results}
    seen: set[tuple[Any, Any, Any]] = set()
    for i, entry in enumerate(status.get("devices") or []):
        path = f"status.devices[{i}]"
        key = (entry.get("driver"), entry.get("pool"), entry.get("device"))
        if key in seen:
            causes.append(
                ("FieldValueDuplicate", path, f"Duplicate value: {json.dumps(list(key))}")
            )
        seen.add(key)
        if key not in allocated:
            causes.append(_bad(path, list(key), "must be an allocated device in the claim"))
        conditions = entry.get("conditions") or []
        if len(conditions) > 8:
            causes.append(
                (
                    "FieldValueTooMany",
                    f"{path}.conditions",
                    f"Too many: {len(conditions)}: must have at most 8 items",
                )
            )
        for j, cond in enumerate(conditions):
            cpath = f"{path}.conditions[{j}]"
            if not cond.get("type"):
                causes.append(_required(f"{cpath}.type"))
            if cond.get("status") not in ("True", "False", "Unknown"):
                causes.append(
                    (
                        "FieldValueNotSupported",
                        f"{cpath}.status",
                        f"Unsupported value: {json.dumps(cond.get('status'))}: "
                        'supported values: "False", "True", "Unknown"',
                    )
                )
            if not _REASON.match(str(cond.get("reason", ""))):
                causes.append(
                    _bad(
                        f"{cpath}.reason",
                        cond.get("reason", ""),
                        "a condition reason must start with alphabetic character, "
                        "optionally followed by a string of alphanumeric characters or '_,:'",
                    )
                )
            if not cond.get("lastTransitionTime"):
                causes.append(_required(f"{cpath}.lastTransitionTime"))
        network = entry.get("networkData") or {}
        if len(network.get("interfaceName", "")) > 256:
            causes.append(_too_long(f"{path}.networkData.interfaceName", 256))
        if len(network.get("hardwareAddress", "")) > 128:
            causes.append(_too_long(f"{path}.networkData.hardwareAddress", 128))
        ips = network.get("ips") or []
        if len(ips) > 16:
            causes.append(
                (
                    "FieldValueTooMany",
                    f"{path}.networkData.ips",
                    f"Too many: {len(ips)}: must have at most 16 items",
                )
            )
        for k, ip in enumerate(ips):
            try:
                ipaddress.ip_interface(ip)
                if "/" not in ip:
                    raise ValueError(ip)
            except ValueError:
                causes.append(
                    _bad(f"{path}.networkData.ips[{k}]", ip, "must be a valid CIDR value")
                )
        if len(set(ips)) != len(ips):
            causes.append(("FieldValueDuplicate", f"{path}.networkData.ips", "Duplicate value"))
    return causes


def validate(kind: Kind, obj: Obj, old: Obj | None) -> None:
    """Raises 422 Invalid when `obj` (replacing `old`, if any) breaks a rule of its kind."""
    causes: list[Cause] = []
    if kind.plural == "resourceslices":
        causes = validate_slice(obj, old)
    elif kind.plural == "resourceclaims":
        causes = validate_claim_status(obj)
    elif kind.plural == "events" and not obj.get("involvedObject", {}).get("name"):
        causes = [_required("involvedObject.name")]
    if causes:
        raise invalid(kind, obj["metadata"]["name"], causes)


def validate_name(kind: Kind, name: str) -> None:
    """Raises 422 Invalid unless `name` is a DNS subdomain (every object's metadata.name)."""
    if problem := dns_subdomain_problem(name):
        raise invalid(kind, name, [_bad("metadata.name", name, problem)])
