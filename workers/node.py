"""A worker node: runs the chosen roles (relay, processors, scheduler) and restarts any that
crash, with backoff, until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

from bootstrap import Container
from events.relay import Relay
from workers.processors import PROCESSORS
from workers.runtime import run_processor
from workers.scheduler import run_scheduler

log = logging.getLogger(__name__)

ALL_ROLES = ("relay", *PROCESSORS, "scheduler")


def default_member_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def role_runner(c: Container, role: str, member: str) -> Callable[[asyncio.Event], Awaitable[None]]:
    if role == "relay":
        relay = Relay(c.store, c.bus, c.settings.database_dsn())
        return relay.run
    if role == "scheduler":
        return lambda stop: run_scheduler(c, stop)
    if role in PROCESSORS:
        processor = PROCESSORS[role](c)
        return lambda stop: run_processor(c.bus, processor, member, stop,
                                          max_attempts=c.settings.CONSUMER_MAX_ATTEMPTS)
    raise ValueError(f"unknown role {role!r}; choose from {', '.join(ALL_ROLES)}")


async def _supervise(role: str, run: Callable[[asyncio.Event], Awaitable[None]],
                     stop: asyncio.Event) -> None:
    backoff = 0.5
    while not stop.is_set():
        try:
            await run(stop)
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("role crashed, restarting", extra={"role": role, "backoff": backoff})
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 30.0)


def start_roles(c: Container, roles: Sequence[str], stop: asyncio.Event,
                member: str | None = None) -> list[asyncio.Task[None]]:
    member = member or default_member_name()
    return [
        asyncio.create_task(_supervise(role, role_runner(c, role, member), stop), name=role)
        for role in roles
    ]
