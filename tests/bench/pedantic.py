"""`benchmark.pedantic` with types: pytest-benchmark leaves it untyped."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from pytest_benchmark.fixture import BenchmarkFixture

T = TypeVar("T")


def pedantic(
    benchmark: BenchmarkFixture, target: Callable[[], T], *, rounds: int, warmup_rounds: int = 0
) -> T:
    """Exactly `rounds` timed calls of `target` (one call when benchmarks are disabled)."""
    result = benchmark.pedantic(  # type: ignore[no-untyped-call]
        target, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1
    )
    return cast(T, result)
