"""The gate: every registered command type has a scenario (`@covers`) in some context's
module of this package, and scenarios name only registered command types."""

from __future__ import annotations

import pytest

import tests.unit.handlers
from bootstrap import ASSEMBLY
from tests.unit.gates import import_test_modules
from tests.unit.handlers.harness import COVERAGE

import_test_modules(tests.unit.handlers)


@pytest.mark.parametrize("command_type", sorted(ASSEMBLY.handlers.by_name))
def test_every_registered_command_type_has_a_scenario(command_type: str) -> None:
    assert COVERAGE.get(command_type), (
        f"no test in tests/unit/handlers/test_<context>.py @covers {command_type}")


def test_scenarios_cover_only_registered_command_types() -> None:
    assert set(COVERAGE) <= set(ASSEMBLY.handlers.by_name)
