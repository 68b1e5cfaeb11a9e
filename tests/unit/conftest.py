from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway import auth
from tests.harness import Node
from tests.memory import memory_app


@pytest.fixture
async def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Node]:
    """The real gateway app and workers, in memory (tests/memory.py)."""
    # Argon2's production cost (tens of ms of CPU per hash) guards stored passwords, not the
    # unit tier; a hash carries its parameters, so hashing and verifying work as before.
    monkeypatch.setattr(auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                        parallelism=1))
    async with memory_app(tmp_path) as n:
        yield n
