"""Test-wide rules.

Tests marked `root` need root and network namespaces. Outside CI they skip
with the reason; in CI (CI=true) they must run, so a missing privilege fails.
"""

from __future__ import annotations

import functools
import os
import subprocess

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
