"""Fixtures for the NRI hook tests: short socket paths, the fake agent."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .fake_agent import FakeAgent, serve_fake_agent


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: pytest's tmp_path is too deep.
    path = Path(tempfile.mkdtemp(prefix="nri-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def agent(sockdir: Path) -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    await serve_fake_agent(fake, str(sockdir / "agent.sock"))
    yield fake
    await fake.stop()
