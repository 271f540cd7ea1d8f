"""One exception hierarchy for the whole driver.

Every error a user or operator can see says what went wrong *and* what to do
about it. Services map these onto gRPC status codes at their edges
(`grpc_code`), so a kubelet, a runtime or the CLI gets the same message the
log shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


class DranetError(Exception):
    """Base of every error raised on purpose by dranet."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class SettingsError(DranetError):
    """A flag or environment variable has a value the service cannot use."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Problem:
    """One problem in a claim configuration: where it is and what is allowed."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(DranetError):
    """A claim configuration is invalid; carries every problem found at once."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        text = "; ".join(str(p) for p in self.problems) or "invalid configuration"
        super().__init__(f"invalid dranet configuration: {text}")


class StoreError(DranetError):
    """The claim-state store cannot be opened, migrated or written."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class RefusedError(DranetError):
    """A request asks for something dranet must not do (wrong pod, uplink, bad path)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class InvalidArgumentError(DranetError):
    """A request is malformed (empty pod UID, relative netns path...)."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(DranetError):
    grpc_code = grpc.StatusCode.NOT_FOUND


class NetworkStepError(DranetError):
    """A netlink/sysfs step of an attach or detach failed; names the step."""

    grpc_code = grpc.StatusCode.INTERNAL

    def __init__(self, step: str, device: str, reason: str, *, hint: str = "") -> None:
        self.step = step
        self.device = device
        self.reason = reason
        super().__init__(f"{step} failed for device {device}: {reason}", hint=hint)


class ProtocolError(DranetError):
    """A peer sent bytes that break a wire protocol (ttrpc, NRI mux)."""

    grpc_code = grpc.StatusCode.INTERNAL


class PeerError(DranetError):
    """A peer (kubelet, runtime, API server, agent) failed or is unreachable."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


def internal_error_text(service: str, doing: str, exc: BaseException) -> str:
    """What a caller sees for a bug in a dranet service: what failed, the exception,
    and which container's log holds the traceback.

    `service` is the container name ("kubelet-plugin", "netlink-agent"); a
    service logs the traceback itself, then aborts the RPC with this text
    instead of grpc's bare "Unexpected <class ...>".
    """
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (
        f"internal error in dranet-{service} while {doing}: {detail}; "
        f"see the {service} container's log in the dranet pod on this node"
    )
