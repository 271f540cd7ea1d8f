"""Fixtures: a short socket dir, a NetLab, the OTLP receiver stand-in (see helpers)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dranet_sandbox.netlab import NetLab
from dranet_sandbox.standins.otlp import OtlpReceiver


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path is too deep.
    path = Path(tempfile.mkdtemp(prefix="obs-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[NetLab]:
    with NetLab() as made:
        yield made


@pytest.fixture
async def receiver(sockdir: Path) -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver(unix_socket=sockdir / "otlp.sock") as made:
        yield made
