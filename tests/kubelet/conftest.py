"""Fixtures for the kubelet-facing plugin half: short socket dirs, a Preparer double."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .helpers import FakePreparer, PluginUnderTest


@pytest.fixture
def kubelet_root() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can exceed that.
    root = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def preparer() -> FakePreparer:
    return FakePreparer()


@pytest.fixture
async def plugin(kubelet_root: Path, preparer: FakePreparer) -> AsyncIterator[PluginUnderTest]:
    under_test = PluginUnderTest(kubelet_root, preparer)
    await under_test.start()
    yield under_test
    await under_test.stop()
