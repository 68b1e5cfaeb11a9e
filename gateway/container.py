"""What the gateway needs from the composition root (bootstrap.Container provides it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fastapi import APIRouter

from events.listener import Notifications
from workers.container import WorkerContainer


class ContributesRouters(Protocol):
    """A bounded context, as far as the gateway is concerned: the routes it serves."""

    @property
    def name(self) -> str: ...

    @property
    def routers(self) -> Sequence[APIRouter]: ...


class GatewayContainer(WorkerContainer, Protocol):
    @property
    def notifications(self) -> Notifications | None: ...

    @property
    def contexts(self) -> Sequence[ContributesRouters]: ...
