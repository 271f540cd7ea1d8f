"""Test-wide rules.

Tests marked `root` need root and network namespaces. Outside CI they skip
with the reason; in CI (CI=true) they must run, so a missing privilege fails.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator

import pytest


@functools.cache
def _netns_unavailable() -> str:
    """Why namespaced tests cannot run here, or '' when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth)"
    probe = f"dranet-probe-{os.getpid()}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is None:
        return
    reason = _netns_unavailable()
    if not reason:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but this test cannot run: {reason}")
    pytest.skip(reason)


# Paths a deployed driver owns on a real node. Tests run their services with
# paths in temp dirs; a test that falls back to a default would write here.
MACHINE_PATHS = ("/run/dranet", "/var/lib/dranet")


@pytest.fixture(scope="session", autouse=True)
def _machine_paths_untouched() -> Iterator[None]:
    before = {p for p in MACHINE_PATHS if os.path.exists(p)}
    yield
    created = {p for p in MACHINE_PATHS if os.path.exists(p)} - before
    assert not created, f"tests created {sorted(created)} on this machine: pass a temp path"
