"""Completeness gates over tests split into one module per context (tests/unit/handlers/,
tests/unit/projectors/): each gate first imports every module of its package, so it sees
every context's scenarios even when it runs alone."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def import_test_modules(package: ModuleType) -> list[str]:
    """Imports the package's test modules (registering their scenarios); their names."""
    names = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
             if m.name.startswith("test_")]
    for name in names:
        importlib.import_module(name)
    return names
