"""Fault injection for tests of the API server stand-in's clients.

`FakeApiServer.fail_next(prefix, count, status)` answers the next requests
whose path starts with `prefix` with that status, `hang_next(prefix, seconds,
count)` makes them wait first (a client with a shorter timeout sees a
timeout); either may be limited to one HTTP method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dranet_sandbox.standins.apiserver.kinds import Obj
from dranet_sandbox.standins.apiserver.status import ApiError


@dataclass
class Fault:
    prefix: str
    count: int
    status: int = 0
    hang: float = 0.0
    method: str = ""


def take_fault(faults: list[Fault], method: str, path: str) -> Fault | None:
    """The first fault armed for this request, spent once (the caller holds the lock)."""
    for fault in faults:
        if fault.count > 0 and path.startswith(fault.prefix) and fault.method in ("", method):
            fault.count -= 1
            return fault
    return None


def fault_answer(fault: Fault) -> tuple[int, Obj] | None:
    """Waits out the fault's hang; its injected error answer, or None to serve normally."""
    if fault.hang:
        time.sleep(fault.hang)
    if fault.status:
        return fault.status, ApiError(
            fault.status, "InternalError", "Internal error occurred: injected fault"
        ).body
    return None
