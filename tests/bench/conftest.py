"""Shows each benchmark's `extra_info` (peak memory, attach vs detach split) after `make bench`.

pytest-benchmark keeps extra_info only in its JSON output; the table has no
column for it. When benchmarks are enabled, the values are listed at the end
of the run, after the tables; the disabled run (`make test`) prints nothing extra.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

_EXTRA: list[tuple[str, dict[str, Any]]] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    bench = getattr(item, "funcargs", {}).get("benchmark")
    if isinstance(bench, BenchmarkFixture) and bench.enabled and bench.extra_info:
        _EXTRA.append((item.nodeid, dict(bench.extra_info)))
    return result


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _EXTRA:
        return
    terminalreporter.section("benchmark extra_info")
    for nodeid, info in _EXTRA:
        values = ", ".join(f"{key}={value}" for key, value in info.items())
        terminalreporter.write_line(f"{nodeid.rsplit('::', 1)[-1]}: {values}")
