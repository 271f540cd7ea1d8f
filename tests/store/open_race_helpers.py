"""Child-process worker for the concurrent-first-open test (importable for spawn)."""

from __future__ import annotations

from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from dranet.errors import StoreError
from dranet.store import Role, Store

from .store_helpers import BOOT


def open_fresh_files(
    directory: str, role: str, rounds: int, barrier: Barrier, out: Queue[Any]
) -> None:
    """Each round, opens a not-yet-existing store file together with its siblings.

    One process per sibling is started once and reused for every round, so many
    simultaneous first opens cost milliseconds each instead of an interpreter start.
    """
    failures: list[tuple[int, str]] = []
    for i in range(rounds):
        barrier.wait()
        try:
            Store(Path(directory) / f"round-{i}.db", role=Role(role), boot_id=BOOT).close()
        except StoreError as exc:
            failures.append((i, str(exc)))
    out.put(failures)
