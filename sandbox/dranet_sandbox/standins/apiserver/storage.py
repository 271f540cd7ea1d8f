"""The API server stand-in's storage and what each verb does to it.

Objects are kept by kind and (namespace, name). Every write bumps one
revision counter, which becomes the object's resourceVersion; an update or
a delete precondition with a stale one is a 409 Conflict. Creates fill
uid, creationTimestamp and generation (and a name from `generateName`),
spec updates bump the generation, the `status` subresource replaces only
status, PATCH is a JSON merge patch. Lists honour field and label selectors.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dranet_sandbox.standins.apiserver.kinds import KINDS, Kind, Obj
from dranet_sandbox.standins.apiserver.selectors import field_matcher, label_matcher
from dranet_sandbox.standins.apiserver.status import (
    ApiError,
    conflict,
    invalid,
    not_found,
    object_details,
)
from dranet_sandbox.standins.apiserver.validation import validate, validate_name

Route = tuple[Kind, str, str, str]  # kind, namespace, name, subresource

_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


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


@dataclass
class Storage:
    """Every object by kind and (namespace, name); `revision` is the last write's."""

    objects: dict[str, dict[tuple[str, str], Obj]] = field(
        default_factory=lambda: {plural: {} for plural in KINDS}
    )
    revision: int = 0

    def store(self, kind: Kind, key: tuple[str, str], obj: Obj) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.objects[kind.plural][key] = obj

    def dispatch(
        self, method: str, route: Route, query: dict[str, str], payload: Any, content_type: str
    ) -> tuple[int, Obj]:
        kind, ns, name, sub = route
        objects = self.objects[kind.plural]
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
        for (obj_ns, _), obj in sorted(self.objects[kind.plural].items()):
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
            "metadata": {"resourceVersion": str(self.revision)},
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
        validate_name(kind, name)
        if kind.namespaced:
            if meta.get("namespace", ns) != ns:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request",
                )
            meta["namespace"] = ns
        if (ns, name) in self.objects[kind.plural]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{kind.qualified} "{name}" already exists',
                object_details(kind, name),
            )
        validate(kind, obj, None)
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        self.store(kind, (ns, name), obj)
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
        validate(kind, updated, current)
        self.store(kind, (ns, name), updated)
        return copy.deepcopy(updated)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
