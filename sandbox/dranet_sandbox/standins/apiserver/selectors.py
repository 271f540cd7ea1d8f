"""List selectors of the API server stand-in (pure).

`fieldSelector`: `=`, `==` and `!=` terms on the kind's supported field labels
only (any other label is refused with 400, as the real server does).
`labelSelector`: equality, inequality and (non-)existence terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dranet_sandbox.standins.apiserver.kinds import Kind, Obj
from dranet_sandbox.standins.apiserver.status import ApiError


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
