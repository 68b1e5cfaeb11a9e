"""Whether the member handling a message still owns it, for the handler's effects.

A member owns a delivered message while it owns the message's partition in the generation
it was delivered in (`Message.fence`). A member stalled past its lease (paused, starved)
can wake up still handling a message that another member took over; each effect it would
still make must be refused. The runtime runs every handler under an `Ownership` (a context
variable): handlers check it before an effect (`still_owner()`), and stamp writes that
others read (the task stream) with its fence, so a store refuses a stale member's write
even if the member stalled between its check and its write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from adapters.bus.base import Consumer, Message


class LostOwnership(Exception):
    """The message moved to another member while this one handled it: the handler stops,
    nothing is acknowledged, and the new owner does the work."""


@dataclass(frozen=True)
class Ownership:
    consumer: Consumer
    message: Message

    @property
    def fence(self) -> int:
        return self.message.fence

    async def check(self) -> None:
        if not await self.consumer.owns(self.message):
            raise LostOwnership(f"{self.message.topic}[{self.message.partition}] moved to "
                                "another member")


_current: ContextVar[Ownership | None] = ContextVar("ownership", default=None)


def current_ownership() -> Ownership | None:
    """The ownership of the message being handled (None outside the runtime)."""
    return _current.get()


def current_fence() -> int:
    ownership = _current.get()
    return 0 if ownership is None else ownership.fence


async def still_owner() -> None:
    """Raise LostOwnership if the message being handled moved to another member."""
    ownership = _current.get()
    if ownership is not None:
        await ownership.check()


@contextmanager
def owning(ownership: Ownership) -> Iterator[None]:
    """Make `ownership` the current one (tasks created inside inherit it)."""
    token = _current.set(ownership)
    try:
        yield
    finally:
        _current.reset(token)
