"""An in-process Kubernetes API server stand-in (HTTP + JSON) for the kubelet plugin.

Serves exactly what the plugin uses, with the real server's paths, status
codes and `Status` bodies:

- core/v1: Nodes (get, list), Events (create, list);
- resource.k8s.io/v1: ResourceClaims (get, list, create, update, the
  `status` subresource by PUT and merge PATCH), DeviceClasses (get, list,
  create), ResourceSlices (list with fieldSelector / labelSelector, get,
  create with generateName, update, delete with preconditions,
  deletecollection - what the kubelet's wipe does).

It keeps resourceVersions (409 Conflict on a stale one), uids, generations,
refuses unknown field selectors (400), and validates ResourceSlices and
claim status the way the real server does (422 Invalid with
`details.causes`): at most 128 devices, device names DNS labels, qualified
attribute names, one value per attribute, strings at most 64 bytes, at most
32 attributes+capacities per device, driver a DNS subdomain, pool names,
immutable driver/pool/nodeName; status.devices must name allocated devices.
No watch, no auth, no admission.

Faults for tests: `fail_next(prefix, count, status)` answers the next
requests whose path starts with `prefix` with that status, `hang_next(prefix,
seconds, count)` makes them wait first (a client with a shorter timeout sees
a timeout). Plugins reach it through `write_kubeconfig(path)`.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
Cause = tuple[str, str, str]  # (reason, field, message)

RESOURCE_GROUP = "resource.k8s.io"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Kind:
    plural: str
    kind: str
    group: str  # "" = core
    namespaced: bool
    status_subresource: bool = False
    fields: tuple[str, ...] = ("metadata.name", "metadata.namespace")

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS = {
    k.plural: k
    for k in (
        Kind("nodes", "Node", "", False),
        Kind("events", "Event", "", True),
        Kind("resourceclaims", "ResourceClaim", RESOURCE_GROUP, True, status_subresource=True),
        Kind("deviceclasses", "DeviceClass", RESOURCE_GROUP, False),
        Kind(
            "resourceslices",
            "ResourceSlice",
            RESOURCE_GROUP,
            False,
            fields=("metadata.name", "spec.nodeName", "spec.driver", "spec.pool.name"),
        ),
    )
}


class ApiError(Exception):
    """An error answer: HTTP status + a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        if details:
            self.body["details"] = details


def _details(kind: Kind, name: str) -> Obj:
    return {"name": name, "group": kind.group, "kind": kind.plural}


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.qualified} "{name}" not found', _details(kind, name))


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
        _details(kind, name),
    )


def invalid(kind: Kind, name: str, causes: list[Cause]) -> ApiError:
    texts = [f"{f}: {m}" for _, f, m in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(kind, name) | {"kind": kind.kind}
    details["causes"] = [{"reason": r, "message": m, "field": f} for r, f, m in causes]
    message = f'{kind.kind}.{kind.group or "core"} "{name}" is invalid: {joined}'
    if not kind.group:
        message = f'{kind.kind} "{name}" is invalid: {joined}'
    return ApiError(422, "Invalid", message, details)


# --- validation (pure) -----------------------------------------------------------


def _bad(field_path: str, value: Any, why: str) -> Cause:
    return ("FieldValueInvalid", field_path, f"Invalid value: {json.dumps(value)}: {why}")


def _required(field_path: str) -> Cause:
    return ("FieldValueRequired", field_path, "Required value")


def _too_long(field_path: str, limit: int) -> Cause:
    return ("FieldValueTooLong", field_path, f"Too long: may not be more than {limit} bytes")


def dns_subdomain_problem(value: str) -> str:
    if len(value) > 253:
        return "must be no more than 253 characters"
    if not _DNS_SUBDOMAIN.match(value):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return ""


def dns_label_problem(value: str) -> str:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _DNS_LABEL.match(value):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character"
        )
    return ""


def qualified_name_problem(name: str) -> str:
    domain, slash, ident = name.rpartition("/")
    if slash:
        if not domain:
            return "the domain must not be empty"
        if len(domain) > 63:
            return "the domain must be no more than 63 characters"
        problem = dns_subdomain_problem(domain.lower())
        if problem:
            return "the domain " + problem
    if not ident:
        return "the name must not be empty"
    if len(ident) > 32:
        return "the name must be no more than 32 characters"
    if not _C_IDENTIFIER.match(ident):
        return (
            "a valid C identifier must start with alphabetic character or '_', followed by "
            "a string of alphanumeric characters or '_'"
        )
    return ""


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


# --- selectors (pure) ---------------------------------------------------------------


def _field_value(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_matcher(kind: Kind, selector: str) -> Callable[[Obj], bool]:
    terms: list[tuple[str, bool, str]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, _, value = term.partition("!=" if negate else "=")
        value = value.removeprefix("=")  # "=="
        if key not in kind.fields:
            raise ApiError(400, "BadRequest", f"field label not supported: {key}")
        terms.append((key, negate, value))
    return lambda obj: all((_field_value(obj, k) == v) != neg for k, neg, v in terms)


def label_matcher(selector: str) -> Callable[[Obj], bool]:
    terms: list[tuple[str, str, str]] = []  # (op, key, value)
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            terms.append(("!=", key.strip(), value.strip()))
        elif "=" in term:
            key, value = term.split("=", 1)
            terms.append(("=", key.strip(), value.strip().lstrip("=")))
        elif term.startswith("!"):
            terms.append(("!", term[1:].strip(), ""))
        else:
            terms.append(("exists", term, ""))

    def holds(labels: dict[str, str], op: str, key: str, value: str) -> bool:
        if op == "!=":
            return labels.get(key) != value
        if op == "=":
            return labels.get(key) == value
        return (key in labels) == (op == "exists")

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(holds(labels, *term) for term in terms)

    return match


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- the server ------------------------------------------------------------------------


@dataclass
class Fault:
    prefix: str
    count: int
    status: int = 0
    hang: float = 0.0
    method: str = ""


@dataclass
class _State:
    objects: dict[str, dict[tuple[str, str], Obj]] = field(
        default_factory=lambda: {plural: {} for plural in KINDS}
    )
    revision: int = 0
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)


class FakeApiServer:
    """Start with `start()` (or `with`); talk to it through `url` or a kubeconfig."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = _State()
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeApiServer:
        self._thread = threading.Thread(
            target=lambda: self._httpd.serve_forever(poll_interval=0.05),
            name="fake-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | Path) -> Path:
        """A kubeconfig (JSON is YAML) whose only cluster is this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin-token"}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
            "current-context": "standin",
        }
        target = Path(path)
        target.write_text(json.dumps(config))
        return target

    # --- faults and inspection ---------------------------------------------------

    def fail_next(self, prefix: str, count: int = 1, status: int = 500, method: str = "") -> None:
        with self._lock:
            self._state.faults.append(Fault(prefix, count, status=status, method=method.upper()))

    def hang_next(self, prefix: str, seconds: float, count: int = 1, method: str = "") -> None:
        with self._lock:
            self._state.faults.append(Fault(prefix, count, hang=seconds, method=method.upper()))

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._state.requests)

    def get(self, plural: str, name: str, namespace: str = "") -> Obj | None:
        with self._lock:
            obj = self._state.objects[plural].get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self._state.objects[plural].items())
                if namespace is None or ns == namespace
            ]

    # --- seeding (no validation: tests set up what they need) ------------------------

    def put(self, plural: str, obj: Obj) -> Obj:
        """Creates or replaces an object as is, filling uid/resourceVersion/creationTimestamp."""
        kind = KINDS[plural]
        with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            key = (meta.get("namespace", "") if kind.namespaced else "", meta["name"])
            old = self._state.objects[plural].get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.kind)
            self._store(kind, key, obj)
            return copy.deepcopy(obj)

    def add_node(self, name: str) -> Obj:
        return self.put("nodes", {"metadata": {"name": name}})

    def delete(self, plural: str, name: str, namespace: str = "") -> bool:
        with self._lock:
            return self._state.objects[plural].pop((namespace, name), None) is not None

    def delete_collection(self, plural: str, field_selector: str = "") -> int:
        """Deletes every match (the kubelet wipes a node's slices this way)."""
        kind = KINDS[plural]
        match = field_matcher(kind, field_selector)
        with self._lock:
            doomed = [k for k, o in self._state.objects[plural].items() if match(o)]
            for key in doomed:
                del self._state.objects[plural][key]
            return len(doomed)

    # --- request handling -------------------------------------------------------------

    def _store(self, kind: Kind, key: tuple[str, str], obj: Obj) -> None:
        self._state.revision += 1
        obj["metadata"]["resourceVersion"] = str(self._state.revision)
        self._state.objects[kind.plural][key] = obj

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self._state.requests.append((method, path))
            for fault in self._state.faults:
                if (
                    fault.count > 0
                    and path.startswith(fault.prefix)
                    and fault.method in ("", method)
                ):
                    fault.count -= 1
                    return fault
        return None

    def handle(self, method: str, raw_path: str, body: bytes, content_type: str) -> tuple[int, Obj]:
        parts = urlsplit(raw_path)
        fault = self._take_fault(method, parts.path)
        if fault is not None:
            if fault.hang:
                time.sleep(fault.hang)
            if fault.status:
                return fault.status, ApiError(
                    fault.status, "InternalError", "Internal error occurred: injected fault"
                ).body
        try:
            route = _route(parts.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            payload = json.loads(body) if body else None
            with self._lock:
                return self._dispatch(method, route, query, payload, content_type)
        except ApiError as exc:
            return exc.code, exc.body
        except json.JSONDecodeError as exc:
            return 400, ApiError(400, "BadRequest", f"the body is not JSON: {exc}").body

    def _dispatch(
        self, method: str, route: _Route, query: dict[str, str], payload: Any, content_type: str
    ) -> tuple[int, Obj]:
        kind, ns, name, sub = route
        objects = self._state.objects[kind.plural]
        if name == "":
            if method == "GET":
                return 200, self._list(kind, ns, query)
            if method == "POST":
                return 201, self._create(kind, ns, payload)
            if method == "DELETE":
                items = self._list(kind, ns, query)
                for item in items["items"]:
                    objects.pop((ns, item["metadata"]["name"]), None)
                return 200, items
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        current = objects.get((ns, name))
        if current is None:
            raise not_found(kind, name)
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            pre = (payload or {}).get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise conflict(
                    kind,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {current['metadata']['uid']}",
                )
            if (
                pre.get("resourceVersion")
                and pre["resourceVersion"] != current["metadata"]["resourceVersion"]
            ):
                raise conflict(
                    kind,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{current['metadata']['resourceVersion']}",
                )
            del objects[(ns, name)]
            return 200, current
        if method == "PATCH":
            if not content_type.startswith(
                ("application/merge-patch+json", "application/strategic-merge-patch+json")
            ):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/merge-patch+json (got {content_type})",
                )
            payload = merge_patch(current, payload)
            payload["metadata"].setdefault(
                "resourceVersion", current["metadata"]["resourceVersion"]
            )
        if method in ("PUT", "PATCH"):
            return 200, self._update(kind, ns, name, sub=sub, current=current, payload=payload)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _list(self, kind: Kind, ns: str, query: dict[str, str]) -> Obj:
        fmatch = field_matcher(kind, query.get("fieldSelector", ""))
        lmatch = label_matcher(query.get("labelSelector", ""))
        items = []
        for (obj_ns, _), obj in sorted(self._state.objects[kind.plural].items()):
            if kind.namespaced and ns and obj_ns != ns:
                continue
            if fmatch(obj) and lmatch(obj):
                item = copy.deepcopy(obj)
                item.pop("kind", None)  # list items carry no kind/apiVersion
                item.pop("apiVersion", None)
                items.append(item)
        return {
            "kind": kind.kind + "List",
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self._state.revision)},
            "items": items,
        }

    def _create(self, kind: Kind, ns: str, payload: Any) -> Obj:
        obj = copy.deepcopy(payload) if isinstance(payload, dict) else {}
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    kind,
                    "",
                    [
                        (
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(_GENERATE_CHARS) for _ in range(5)
            )
        name = meta["name"]
        if problem := dns_subdomain_problem(name):
            raise invalid(kind, name, [_bad("metadata.name", name, problem)])
        if kind.namespaced:
            if meta.get("namespace", ns) != ns:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request",
                )
            meta["namespace"] = ns
        if (ns, name) in self._state.objects[kind.plural]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{kind.qualified} "{name}" already exists',
                _details(kind, name),
            )
        self._validate(kind, obj, None)
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        self._store(kind, (ns, name), obj)
        return copy.deepcopy(obj)

    def _update(
        self, kind: Kind, ns: str, name: str, *, sub: str, current: Obj, payload: Any
    ) -> Obj:
        if not isinstance(payload, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        meta = payload.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not "
                f"match the name on the URL ({name})",
            )
        rv = meta.get("resourceVersion", "")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(
                kind,
                name,
                "the object has been modified; please apply your changes to "
                "the latest version and try again",
            )
        updated = copy.deepcopy(current)
        if sub == "status":
            updated["status"] = copy.deepcopy(payload.get("status") or {})
        else:
            for key, value in payload.items():
                if key not in ("metadata", "status", "kind", "apiVersion"):
                    updated[key] = copy.deepcopy(value)
            if not kind.status_subresource and "status" in payload:
                updated["status"] = copy.deepcopy(payload["status"])
            for key in ("labels", "annotations", "ownerReferences"):
                if key in meta:
                    updated["metadata"][key] = copy.deepcopy(meta[key])
            if updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = (
                    int(current["metadata"].get("generation", 1)) + 1
                )
        self._validate(kind, updated, current)
        self._store(kind, (ns, name), updated)
        return copy.deepcopy(updated)

    def _validate(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        causes: list[Cause] = []
        if kind.plural == "resourceslices":
            causes = validate_slice(obj, old)
        elif kind.plural == "resourceclaims":
            causes = validate_claim_status(obj)
        elif kind.plural == "events" and not obj.get("involvedObject", {}).get("name"):
            causes = [_required("involvedObject.name")]
        if causes:
            raise invalid(kind, obj["metadata"]["name"], causes)


_Route = tuple[Kind, str, str, str]  # kind, namespace, name, subresource


def _route(path: str) -> _Route:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        rest = parts[2:]
    elif parts[:3] == ["apis", RESOURCE_GROUP, "v1"]:
        rest = parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    ns = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not rest or rest[0] not in KINDS or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    kind = KINDS[rest[0]]
    group_ok = kind.group == ("" if parts[0] == "api" else RESOURCE_GROUP)
    sub = rest[2] if len(rest) == 3 else ""
    if (
        not group_ok
        or (kind.namespaced != bool(ns) and len(rest) > 1)
        or sub not in ("", "status")
        or (sub and not kind.status_subresource)
    ):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return kind, ns, rest[1] if len(rest) > 1 else "", sub


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _handler_for(server: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            code, answer = server.handle(
                self.command, self.path, body, self.headers.get("Content-Type") or ""
            )
            data = json.dumps(answer).encode()
            try:
                self.send_response(code, HTTPStatus(code).phrase)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. after a timeout)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests read `requests` instead

    return Handler


def iter_slices(server: FakeApiServer, driver: str, node: str) -> Iterator[Obj]:
    """The slices of one driver on one node, sorted by name."""
    selector = field_matcher(KINDS["resourceslices"], f"spec.driver={driver},spec.nodeName={node}")
    yield from (s for s in server.list("resourceslices") if selector(s))
