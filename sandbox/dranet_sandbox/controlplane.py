"""The control plane's part in the sandbox: DeviceClass, ResourceClaims, allocation.

There is no scheduler here, so `ControlPlane` does its DRA work against the
API server stand-in, through the same HTTP paths (and validation) a real
client would use:

- `create_device_class` — default: `dranet`, selector
  `device.driver == "dra.net"`;
- `create_claim` — `spec.devices.requests[].exactly` (deviceClassName,
  selectors, count) and `spec.devices.config[]` with opaque parameters for
  the driver;
- `allocate` — the allocator. For each request, in order, it takes the
  first devices (slices sorted by name, then devices in slice order) of
  this node's ResourceSlices that are not allocated to any other claim and
  for which every CEL selector of the request's DeviceClass and of the
  request itself is true. Selectors are evaluated with cel-python
  (`celpy`, as the plugin's publish filter) over the Kubernetes DRA CEL
  environment: `device.driver`, `device.attributes[domain].name` (the
  attribute's value: string, int, bool; a version as its string) and
  `device.capacity[domain].name`. An evaluation error (e.g. a missing
  attribute) counts as "does not match", as a real scheduler refuses such a
  device. It writes `status.allocation` (devices.results with
  request/driver/pool/device; devices.config = the class configs with
  source FromClass, then the claim's with source FromClaim; a nodeSelector
  for this node) and `status.reservedFor` (the pod), through the status
  subresource;
- `deallocate` — clears the status, as the resource-claim controller does
  when the pod is gone.

Only `ExactCount` requests are supported (count defaults to 1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from dranet.errors import InvalidArgumentError, NotFoundError, PeerError
from dranet_sandbox.standins.apiserver import FakeApiServer, iter_slices

Obj = dict[str, Any]
DeviceKey = tuple[str, str, str]  # (driver, pool, device)
DRIVER = "dra.net"
DEFAULT_CLASS = "dranet"
DEFAULT_SELECTOR = f'device.driver == "{DRIVER}"'
RESOURCE_API = "/apis/resource.k8s.io/v1"


@dataclass(frozen=True)
class DeviceRequest:
    """One entry of `spec.devices.requests` (the `exactly` form)."""

    name: str = "nic"
    device_class: str = DEFAULT_CLASS
    selectors: tuple[str, ...] = ()
    count: int = 1


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


# --- pure ----------------------------------------------------------------------------


def opaque_config(parameters: Any, requests: Sequence[str] = (), driver: str = DRIVER) -> Obj:
    """A `spec.devices.config[]` / DeviceClass `spec.config[]` entry for `driver`."""
    entry: Obj = {"opaque": {"driver": driver, "parameters": parameters}}
    if requests:
        entry["requests"] = list(requests)
    return entry


def device_class_body(
    name: str = DEFAULT_CLASS, selectors: Sequence[str] = (DEFAULT_SELECTOR,),
    config: Sequence[Obj] = (),
) -> Obj:  # fmt: skip
    spec: Obj = {"selectors": [{"cel": {"expression": s}} for s in selectors]}
    if config:
        spec["config"] = list(config)
    return {"metadata": {"name": name}, "spec": spec}


def claim_body(
    name: str, namespace: str, requests: Sequence[DeviceRequest], config: Sequence[Obj] = ()
) -> Obj:
    entries = []
    for request in requests:
        exactly: Obj = {"deviceClassName": request.device_class, "count": request.count}
        if request.selectors:
            exactly["selectors"] = [{"cel": {"expression": s}} for s in request.selectors]
        entries.append({"name": request.name, "exactly": exactly})
    devices: Obj = {"requests": entries}
    if config:
        devices["config"] = list(config)
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"devices": devices}}


def cel_device(driver: str, device: Mapping[str, Any]) -> Any:
    """A published device as DRA's CEL sees it: attributes grouped by domain."""
    attributes: dict[str, dict[str, Any]] = {}
    for qualified, value in (device.get("attributes") or {}).items():
        domain, _, ident = qualified.rpartition("/")
        kind = next(k for k in ("string", "int", "bool", "version") if k in value)
        attributes.setdefault(domain or driver, {})[ident] = value[kind]
    capacity: dict[str, dict[str, Any]] = {}
    for qualified, value in (device.get("capacity") or {}).items():
        domain, _, ident = qualified.rpartition("/")
        capacity.setdefault(domain or driver, {})[ident] = str(value.get("value", ""))
    return json_to_cel({"driver": driver, "attributes": attributes, "capacity": capacity})


def selector_matches(expression: str, driver: str, device: Mapping[str, Any]) -> bool:
    """True when the CEL `expression` holds for the device; errors count as false."""
    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression))
    except Exception as exc:  # celpy's own parse errors
        raise InvalidArgumentError(
            f"CEL selector {expression!r} does not compile: {exc}",
            hint='e.g. device.driver == "dra.net"',
        ) from exc
    try:
        result = program.evaluate({"device": cel_device(driver, device)})
    except CELEvalError:
        return False
    return not isinstance(result, CELEvalError) and bool(result) is True


def allocated_devices(claims: Iterable[Mapping[str, Any]], skip_uid: str = "") -> set[DeviceKey]:
    """Devices held by the allocations of `claims` (but the one with `skip_uid`)."""
    taken: set[DeviceKey] = set()
    for claim in claims:
        if claim.get("metadata", {}).get("uid") == skip_uid:
            continue
        allocation = (claim.get("status") or {}).get("allocation") or {}
        for r in (allocation.get("devices") or {}).get("results") or []:
            taken.add((r.get("driver", ""), r.get("pool", ""), r.get("device", "")))
    return taken


def allocation_status(
    claim: Mapping[str, Any],
    classes: Mapping[str, Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
    taken: set[DeviceKey],
    *,
    pod: PodRef,
    node: str,
) -> Obj:
    """The claim's `status` as the scheduler writes it; raises when it cannot allocate."""
    meta = claim.get("metadata") or {}
    where = f"claim {meta.get('namespace')}/{meta.get('name')}"
    devices_spec = (claim.get("spec") or {}).get("devices") or {}
    results: list[Obj] = []
    class_configs: list[Obj] = []
    used = set(taken)
    for request in devices_spec.get("requests") or []:
        exactly = request.get("exactly") or {}
        class_name = exactly.get("deviceClassName", "")
        device_class = classes.get(class_name)
        if device_class is None:
            raise NotFoundError(
                f"{where}: request {request['name']!r} names DeviceClass {class_name!r}, "
                "which does not exist",
                hint="create it first (ControlPlane.create_device_class)",
            )
        if exactly.get("allocationMode", "ExactCount") != "ExactCount":
            raise InvalidArgumentError(f"{where}: only allocationMode ExactCount is supported")
        selectors = [s["cel"]["expression"] for s in device_class["spec"].get("selectors") or []]
        selectors += [s["cel"]["expression"] for s in exactly.get("selectors") or []]
        wanted = int(exactly.get("count") or 1)
        picked = 0
        for piece in sorted(slices, key=lambda s: s["metadata"]["name"]):
            driver, pool = piece["spec"]["driver"], piece["spec"]["pool"]["name"]
            for device in piece["spec"].get("devices") or []:
                key = (driver, pool, device["name"])
                if picked == wanted or key in used:
                    continue
                if all(selector_matches(s, driver, device) for s in selectors):
                    used.add(key)
                    picked += 1
                    results.append(
                        {"request": request["name"], "driver": driver, "pool": pool,
                         "device": device["name"]}
                    )  # fmt: skip
        if picked < wanted:
            raise NotFoundError(
                f"{where}: request {request['name']!r} wants {wanted} device(s) of class "
                f"{class_name!r} ({' && '.join(selectors) or 'any'}), {picked} free on {node}",
                hint="is the driver publishing? are the devices held by other claims?",
            )
        for entry in device_class["spec"].get("config") or []:
            class_configs.append({**entry, "source": "FromClass", "requests": [request["name"]]})
    claim_configs = [
        {**entry, "source": "FromClaim", "requests": list(entry.get("requests") or [])}
        for entry in devices_spec.get("config") or []
    ]
    node_selector = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }
    return {
        "allocation": {
            "devices": {"results": results, "config": class_configs + claim_configs},
            "nodeSelector": node_selector,
        },
        "reservedFor": [{"resource": "pods", "name": pod.name, "uid": pod.uid}],
    }


# --- against the API server stand-in ----------------------------------------------------


class ControlPlane:
    """DeviceClasses, claims and allocation for one node, over the stand-in's HTTP API."""

    def __init__(self, api: FakeApiServer, node: str, driver: str = DRIVER) -> None:
        self.api = api
        self.node = node
        self.driver = driver

    def _call(self, method: str, path: str, body: Obj | None = None) -> Obj:
        raw = json.dumps(body).encode() if body is not None else b""
        code, answer = self.api.handle(method, path, raw, "application/json")
        if code >= 400:
            raise PeerError(f"{method} {path}: {code} {answer.get('message', answer)}")
        return answer

    def create_device_class(
        self, name: str = DEFAULT_CLASS, selectors: Sequence[str] = (DEFAULT_SELECTOR,),
        config: Sequence[Obj] = (),
    ) -> Obj:  # fmt: skip
        return self._call(
            "POST", f"{RESOURCE_API}/deviceclasses", device_class_body(name, selectors, config)
        )

    def create_claim(
        self,
        name: str,
        *,
        namespace: str = "default",
        requests: Sequence[DeviceRequest] = (DeviceRequest(),),
        parameters: Any = None,
        config: Sequence[Obj] = (),
    ) -> Obj:
        """A ResourceClaim; `parameters` is a dranet config applying to every request."""
        entries = list(config)
        if parameters is not None:
            entries.insert(0, opaque_config(parameters, driver=self.driver))
        body = claim_body(name, namespace, requests, entries)
        return self._call("POST", f"{RESOURCE_API}/namespaces/{namespace}/resourceclaims", body)

    def claim(self, namespace: str, name: str) -> Obj:
        return self._call("GET", f"{RESOURCE_API}/namespaces/{namespace}/resourceclaims/{name}")

    def slices(self) -> list[Obj]:
        return list(iter_slices(self.api, self.driver, self.node))

    def published_devices(self) -> list[str]:
        return [d["name"] for s in self.slices() for d in s["spec"].get("devices") or []]

    def allocate(self, namespace: str, name: str, pod: PodRef) -> Obj:
        """Allocates the claim for `pod` as the scheduler would; returns the stored claim."""
        claim = self.claim(namespace, name)
        classes = {c["metadata"]["name"]: c for c in self.api.list("deviceclasses")}
        slices = [
            s for s in self.api.list("resourceslices") if s["spec"].get("nodeName") == self.node
        ]
        taken = allocated_devices(self.api.list("resourceclaims"), claim["metadata"]["uid"])
        status = allocation_status(claim, classes, slices, taken, pod=pod, node=self.node)
        return self.write_status(namespace, name, status)

    def write_status(self, namespace: str, name: str, status: Obj) -> Obj:
        """PUTs the claim's status (low level: any allocation, any driver).

        Retried on 409: the plugin writes status.devices at the same time.
        """
        path = f"{RESOURCE_API}/namespaces/{namespace}/resourceclaims/{name}/status"
        for _ in range(20):
            claim = self.claim(namespace, name)
            claim["status"] = status
            try:
                return self._call("PUT", path, claim)
            except PeerError as exc:
                if " 409 " not in str(exc):
                    raise
        raise PeerError(f"claim {namespace}/{name}: status kept conflicting")

    def deallocate(self, namespace: str, name: str) -> None:
        """Clears allocation and reservation (the pod is gone); a missing claim is fine."""
        try:
            self.write_status(namespace, name, {})
        except PeerError as exc:
            if " 404 " not in str(exc):
                raise
