"""The gate: every projector of the console read model is exercised (`@exercises`) by a
scenario in some context's module of this package, and scenarios name only projected
events."""

from __future__ import annotations

import pytest

import tests.unit.projectors
from schemas.base import EventPayload
from tests.unit.gates import import_test_modules
from tests.unit.projectors.harness import PROJECTION, SCENARIOS

import_test_modules(tests.unit.projectors)


@pytest.mark.parametrize("event_type", [pytest.param(t, id=t.__name__) for t in sorted(
    PROJECTION.handlers, key=lambda t: t.__name__)])
def test_every_projector_is_exercised(event_type: type[EventPayload]) -> None:
    assert SCENARIOS.get(event_type), (
        f"no test in tests/unit/projectors/test_<context>.py applies {event_type.__name__}: "
        "add it to a scenario and name it in that test's @exercises(...)")


def test_scenarios_name_only_projected_events() -> None:
    assert set(SCENARIOS) <= set(PROJECTION.handlers)
    assert not set(SCENARIOS) & PROJECTION.ignored
