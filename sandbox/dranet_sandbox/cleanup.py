"""Clean-up that finishes: the node sandbox's helpers for cancellation and failure.

A sandbox half torn down leaks namespaces and daemons, so its set-up steps
and clean-up run to their end even when the caller is cancelled
(`run_to_end`, `to_completion`), and one failed clean-up step does not stop
the others (`best_effort`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def run_to_end(func: Callable[[], object]) -> None:
    """Runs blocking `func` in a thread; a cancellation waits for it to finish first,
    so what it created is known to the clean-up."""
    task = asyncio.ensure_future(asyncio.to_thread(func))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


async def to_completion(step: Coroutine[Any, Any, None]) -> None:
    """Awaits `step` to its end even if we are cancelled meanwhile (clean-up must
    finish: a half-done one leaks namespaces and daemons), then re-raises the
    cancellation."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and not cancelled:
                raise
            cancelled = True
            log.warning("interrupted during clean-up: finishing the clean-up first")
    task.result()
    if cancelled:
        raise asyncio.CancelledError


async def best_effort(what: str, step: Any) -> None:
    """Awaits `step`; a failure is logged (clean-up goes on with the next step)."""
    try:
        await step
    except Exception as exc:
        log.warning("clean-up: %s failed: %s", what, exc)
