"""Error answers of the API server stand-in: HTTP codes with metav1.Status bodies.

`not_found` (404), `conflict` (409) and `invalid` (422 with `details.causes`)
word their messages the way the real server does.
"""

from __future__ import annotations

from dranet_sandbox.standins.apiserver.kinds import Kind, Obj

Cause = tuple[str, str, str]  # (reason, field, message)


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


def object_details(kind: Kind, name: str) -> Obj:
    return {"name": name, "group": kind.group, "kind": kind.plural}


def not_found(kind: Kind, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{kind.qualified} "{name}" not found', object_details(kind, name)
    )


def conflict(kind: Kind, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
        object_details(kind, name),
    )


def invalid(kind: Kind, name: str, causes: list[Cause]) -> ApiError:
    texts = [f"{f}: {m}" for _, f, m in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = object_details(kind, name) | {"kind": kind.kind}
    details["causes"] = [{"reason": r, "message": m, "field": f} for r, f, m in causes]
    message = f'{kind.kind}.{kind.group or "core"} "{name}" is invalid: {joined}'
    if not kind.group:
        message = f'{kind.kind} "{name}" is invalid: {joined}'
    return ApiError(422, "Invalid", message, details)
