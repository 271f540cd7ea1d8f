"""Fixtures for the claim-state store tests: a fresh path and open stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dranet.store import Role, Store

from .store_helpers import BOOT


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def plugin(db: Path) -> Iterator[Store]:
    with Store(db, role=Role.PLUGIN, boot_id=BOOT) as store:
        yield store


@pytest.fixture
def agent(db: Path, plugin: Store) -> Iterator[Store]:
    with Store(db, role=Role.AGENT, boot_id=BOOT) as store:
        yield store


@pytest.fixture
def reader(db: Path, plugin: Store) -> Iterator[Store]:
    with Store(db, role=Role.READER, boot_id=BOOT) as store:
        yield store
