"""Command handlers keyed by their command class, which each handler's signature names.

A context lists its handlers once (`command_handlers(create_app, update_app, ...)`); the
composition root merges the contexts' maps, refusing a command type handled twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, get_type_hints

from commands.unit_of_work import UnitOfWork
from schemas.base import CommandPayload

Handler = Callable[[Any, UnitOfWork], dict[str, Any]]
HandlerMap = Mapping[type[CommandPayload], Handler]


def command_handlers(*handlers: Handler) -> dict[type[CommandPayload], Handler]:
    registry: dict[type[CommandPayload], Handler] = {}
    for handler in handlers:
        first = next(iter(inspect.signature(handler).parameters))
        command = get_type_hints(handler)[first]
        if not (isinstance(command, type) and issubclass(command, CommandPayload)):
            raise TypeError(f"{handler.__name__}: first parameter must be a command payload")
        if command in registry:
            raise ValueError(f"{command.command_type} has two handlers: "
                             f"{registry[command].__name__}, {handler.__name__}")
        registry[command] = handler
    return registry


class CommandHandlers:
    """Every context's handlers, looked up by command type name (as commands travel)."""

    def __init__(self, maps: Iterable[HandlerMap]) -> None:
        self.by_name: dict[str, tuple[type[CommandPayload], Handler]] = {}
        for handlers in maps:
            for command, handler in handlers.items():
                if command.command_type in self.by_name:
                    raise ValueError(f"{command.command_type} is handled in two contexts")
                self.by_name[command.command_type] = (command, handler)

    def get(self, command_type: str) -> tuple[type[CommandPayload], Handler] | None:
        return self.by_name.get(command_type)
