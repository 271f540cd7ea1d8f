"""The kubelet's checks (pure): what it accepts from a plugin's answers.

A GetInfo answer must be of type "DRAPlugin", named, offer a service this
kubelet knows (the plugin's first known entry wins) and an endpoint that is
a unix socket. A prepare/unprepare response must answer exactly the claim
UIDs of the request. `rpc_error` words an RPC failure as the kubelet does.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc

from dranet.errors import PeerError, ProtocolError

DRA_PLUGIN_TYPE = "DRAPlugin"
# The services a 1.34/1.35 kubelet speaks, by registration id.
KNOWN_SERVICES: tuple[str, ...] = ("v1.DRAPlugin", "v1beta1.DRAPlugin")


def choose_service(supported: Sequence[str], known: Sequence[str]) -> str:
    """The kubelet's pick: the plugin's first entry the kubelet knows."""
    if not supported:
        raise ValueError("empty list of supported versions")
    for service in supported:
        if service in known:
            return service
    raise ValueError(
        f"none of services supported by the plugin ({', '.join(supported)}) "
        f"are supported by the kubelet ({', '.join(known)})"
    )


def check_plugin_info(info: Any, socket: Path, known: Sequence[str]) -> tuple[Path, str]:
    """Validates a GetInfo answer; returns (endpoint, chosen service) or raises ValueError."""
    if info.type != DRA_PLUGIN_TYPE:
        raise ValueError(f"no handler registered for plugin type: {info.type} at socket {socket}")
    if not info.name:
        raise ValueError(f"plugin at socket {socket} has an empty name")
    service = choose_service(list(info.supported_versions), known)
    endpoint = Path(info.endpoint) if info.endpoint else socket
    if not endpoint.is_absolute():
        raise ValueError(f"endpoint {info.endpoint!r} is not an absolute path")
    try:
        mode = endpoint.stat().st_mode
    except OSError as exc:
        raise ValueError(f"endpoint {endpoint} does not exist: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"endpoint {endpoint} is not a unix socket")
    return endpoint, service


def check_response_uids(method: str, requested: Iterable[str], answered: Iterable[str]) -> None:
    """The kubelet's response rules: no unknown UID, none skipped."""
    wanted = set(requested)
    got = set(answered)
    unknown = sorted(got - wanted)
    if unknown:
        raise ProtocolError(
            f"{method} returned result for unknown claim UID {', '.join(unknown)}",
            hint="answer exactly the claim UIDs of the request",
        )
    skipped = sorted(wanted - got)
    if skipped:
        raise ProtocolError(
            f"{method} skipped {len(skipped)} ResourceClaims ({', '.join(skipped)})",
            hint="answer every requested claim, with an empty entry on success",
        )


def rpc_error(method: str, exc: grpc.aio.AioRpcError) -> PeerError:
    return PeerError(f"{method}: rpc error: code = {exc.code().name} desc = {exc.details()}")
