"""The API server stand-in itself: HTTP serving, routing, seeding and inspection.

`FakeApiServer` serves the real server's paths (`/api/v1/...`,
`/apis/resource.k8s.io/v1/...`, namespaced or not, the `status`
subresource) on a thread, answers unknown ones 404 NotFound, and hands the
rest to its `Storage`. Tests seed and read objects directly (`put`, `get`,
`list`, ...), see every request in `requests`, and inject faults. Plugins
reach it through `write_kubeconfig(path)`.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dranet_sandbox.standins.apiserver.faults import Fault, fault_answer, take_fault
from dranet_sandbox.standins.apiserver.kinds import KINDS, RESOURCE_GROUP, Obj
from dranet_sandbox.standins.apiserver.selectors import field_matcher
from dranet_sandbox.standins.apiserver.status import ApiError
from dranet_sandbox.standins.apiserver.storage import Route, Storage, now


class FakeApiServer:
    """Start with `start()` (or `with`); talk to it through `url` or a kubeconfig."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._storage = Storage()
        self._faults: list[Fault] = []
        self._requests: list[tuple[str, str]] = []
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
            self._faults.append(Fault(prefix, count, status=status, method=method.upper()))

    def hang_next(self, prefix: str, seconds: float, count: int = 1, method: str = "") -> None:
        with self._lock:
            self._faults.append(Fault(prefix, count, hang=seconds, method=method.upper()))

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._requests)

    def get(self, plural: str, name: str, namespace: str = "") -> Obj | None:
        with self._lock:
            obj = self._storage.objects[plural].get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in sorted(self._storage.objects[plural].items())
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
            old = self._storage.objects[plural].get(key)
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.kind)
            self._storage.store(kind, key, obj)
            return copy.deepcopy(obj)

    def add_node(self, name: str) -> Obj:
        return self.put("nodes", {"metadata": {"name": name}})

    def delete(self, plural: str, name: str, namespace: str = "") -> bool:
        with self._lock:
            return self._storage.objects[plural].pop((namespace, name), None) is not None

    def delete_collection(self, plural: str, field_selector: str = "") -> int:
        """Deletes every match (the kubelet wipes a node's slices this way)."""
        kind = KINDS[plural]
        match = field_matcher(kind, field_selector)
        with self._lock:
            doomed = [k for k, o in self._storage.objects[plural].items() if match(o)]
            for key in doomed:
                del self._storage.objects[plural][key]
            return len(doomed)

    # --- request handling -------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self._requests.append((method, path))
            return take_fault(self._faults, method, path)

    def handle(self, method: str, raw_path: str, body: bytes, content_type: str) -> tuple[int, Obj]:
        parts = urlsplit(raw_path)
        fault = self._take_fault(method, parts.path)
        if fault is not None and (answer := fault_answer(fault)) is not None:
            return answer
        try:
            route = _route(parts.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            payload = json.loads(body) if body else None
            with self._lock:
                return self._storage.dispatch(method, route, query, payload, content_type)
        except ApiError as exc:
            return exc.code, exc.body
        except json.JSONDecodeError as exc:
            return 400, ApiError(400, "BadRequest", f"the body is not JSON: {exc}").body


def _route(path: str) -> Route:
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
