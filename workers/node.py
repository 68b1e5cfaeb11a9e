"""A worker node: runs the chosen roles (relay, processors, scheduler) and restarts any that
crash, with backoff, until told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

from adapters.transient import is_transient
from events.consumer_groups import GroupProgress
from events.relay import Relay
from workers.container import WorkerContainer, provide
from workers.declarations import WorkTopic
from workers.processors import command_processor, projection_processor
from workers.runtime import Processor, RetryPolicy, run_processor
from workers.scheduler import run_scheduler

log = logging.getLogger(__name__)

def all_roles(work: Iterable[str]) -> tuple[str, ...]:
    """The backbone's roles and those the contexts contribute (`WorkerContainer.work`:
    `<context>.<role>`, one per work topic)."""
    return ("relay", "commands", "projections", *work, "scheduler")


def work_processor(c: WorkerContainer, work: WorkTopic) -> Processor:
    """The processor consuming a work topic, given the dependencies its factory declares."""
    return provide(c, work.processor, work.name)


def default_member_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def processors_of(c: WorkerContainer, role: str) -> list[Processor]:
    """The processors (consumer groups) a role runs; none for relay and scheduler."""
    if role == "commands":
        return [command_processor(c)]
    if role == "projections":
        return [projection_processor(c, p) for p in c.projections.values()]
    if role in ("relay", "scheduler"):
        return []
    return [work_processor(c, c.work[role])]


def role_runners(c: WorkerContainer, role: str, member: str,
                 concurrency: int = 1) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
    """The role's tasks; a processor's group gets `concurrency` members in this process."""
    if role == "relay":
        return [Relay(c.event_types, c.bus, c.routing, c.settings.database_dsn()).run]
    if role == "scheduler":
        return [lambda stop: run_scheduler(c, stop)]
    if role not in all_roles(c.work):
        raise ValueError(f"unknown role {role!r}; choose from {', '.join(all_roles(c.work))}")

    def runner(processor: Processor, name: str) -> Callable[[asyncio.Event], Awaitable[None]]:
        return lambda stop: run_processor(
            c.bus, processor, name, stop,
            RetryPolicy(max_attempts=c.settings.CONSUMER_MAX_ATTEMPTS),
            concurrency=c.settings.CONSUMER_CONCURRENCY,
            progress=GroupProgress(c.engine, processor.group))

    names = [member] if concurrency == 1 else [f"{member}.{i}" for i in range(1, concurrency + 1)]
    return [runner(p, name) for p in processors_of(c, role) for name in names]


HEALTHY_SECONDS = 60.0  # a role that ran this long before failing starts a new incident


async def _supervise(role: str, run: Callable[[asyncio.Event], Awaitable[None]],
                     stop: asyncio.Event) -> None:
    backoff = 0.5
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        try:
            await run(stop)
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if loop.time() - started >= HEALTHY_SECONDS:
                backoff = 0.5  # a new incident: come back fast, as after the first one
            # "role" is taken: every record of a process carries its process role (observability)
            if is_transient(exc):  # a dependency is down: expected, no traceback each time
                log.warning("role waiting for a dependency, restarting", extra={
                    "task": role, "backoff": backoff, "error": repr(exc)[:300]})
            else:
                log.exception("role crashed, restarting", extra={"task": role, "backoff": backoff})
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 5.0)  # back within seconds of a dependency's return


def start_roles(c: WorkerContainer, roles: Sequence[str], stop: asyncio.Event,
                member: str | None = None, concurrency: int = 1) -> list[asyncio.Task[None]]:
    member = member or default_member_name()
    return [
        asyncio.create_task(_supervise(role, run, stop), name=role)
        for role in roles for run in role_runners(c, role, member, concurrency)
    ]
