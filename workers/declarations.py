"""What a context declares for its workers, once, in its manifest: each work topic with the
routes that feed it and the processor that consumes it, and its scheduled jobs.

A processor factory or a job names the dependencies it uses as keyword-only parameters, each
called as the worker container calls it (`workers/container.py`: `store`, `vectors`, …); the
composition root passes exactly those, never the whole container.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from config import Settings
from events.routing import Route
from workers.runtime import Processor
from workflow_graph.cron import Cron

# (the work topic's name, *, its dependencies) -> the processor consuming that topic
ProcessorFactory = Callable[..., Processor]


@dataclass(frozen=True)
class WorkTopic:
    """A work topic and its processor. `name` is the topic's and its consumer group's (the
    group keeps its offsets across renames of the role); the processor runs in the worker
    role `<context>.<role>`."""

    name: str
    role: str
    routes: Sequence[Route]
    processor: ProcessorFactory


# How often a job runs: every so many seconds, or on a crontab schedule (UTC).
Schedule = float | Cron


@dataclass(frozen=True)
class Job:
    """A periodic job (Celery beat's entries): run by the scheduler's leader on its
    `schedule`, or once by `eddy job <name>`. A schedule taken from the settings (Dify's
    `ENABLE_*` switches and intervals) is a function of them; None switches the job off."""

    name: str
    schedule: Schedule | Callable[[Settings], Schedule | None]
    run: Callable[..., Awaitable[None]]  # (*, its dependencies) -> None

    def schedule_in(self, settings: Settings) -> Schedule | None:
        return self.schedule(settings) if callable(self.schedule) else self.schedule


def dependencies_of(factory: Callable[..., object]) -> tuple[str, ...]:
    """The dependencies a processor factory or a job declares: its keyword-only parameters."""
    return tuple(p.name for p in inspect.signature(factory).parameters.values()
                 if p.kind is inspect.Parameter.KEYWORD_ONLY)


def positional_parameters(factory: Callable[..., object]) -> list[str]:
    return [p.name for p in inspect.signature(factory).parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                          inspect.Parameter.POSITIONAL_OR_KEYWORD)]
