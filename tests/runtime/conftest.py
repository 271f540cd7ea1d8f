"""A real containerd 1.7 with NRI for the runtime tests (one daemon per module)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dranet_sandbox.containerd import Containerd
from dranet_sandbox.netlab import NetLab


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    with NetLab() as lab:
        yield lab


@pytest.fixture(scope="module")
def containerd(lab: NetLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """containerd in the lab's node namespace; in CI a set-up failure fails the test."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but not root: the real-runtime tests cannot run")
        pytest.skip("needs root to run containerd")
    daemon = Containerd(base=Path(tmp_path_factory.mktemp("containerd")), netns=lab.path(lab.node))
    try:
        daemon.start()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but containerd could not be set up: {exc}")
        pytest.skip(f"containerd could not be set up: {exc}")
    yield daemon
    daemon.stop()
