"""The `world` a command handler test runs commands in: it fails the test that did not run
every command type it declares with `@covers(...)`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.handlers.harness import (
    World,
)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w = World()
    yield w
    declared: frozenset[str] = getattr(request.function, "covered_commands", frozenset())
    missing = declared - w.executed
    assert not missing, f"{request.function.__name__} declares but never runs {sorted(missing)}"
