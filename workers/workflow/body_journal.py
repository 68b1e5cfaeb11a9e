"""The engine's record of iteration and loop bodies (`BodyJournal` of the executor interface):
each body fact is an event of the run (`WorkflowBodyNodeRecorded`, with its scope), committed
before anything that depends on it starts. A member taking the run over reads them from the
run's history, and each container's passes replay what their scope recorded, so finished
body nodes never run again. Values are masked as the run's other events are.

A member that lost the run cannot append a late fact: its commits are refused as its other
commits are (ownership, the run's version)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from schemas.base import EventPayload
from schemas.workflow import events as ev
from workflow_graph.scheduler import Fact, NodeFailed, NodeStarted, NodeSucceeded

FORGOTTEN = "forgotten"


class EventBodyJournal:
    def __init__(self, record: Callable[[EventPayload], Awaitable[None]],
                 mask: Callable[[Any], Any]) -> None:
        self._record = record  # commits one payload on the run (the engine's)
        self.mask = mask
        self.facts: dict[str, list[Fact]] = {}

    @property
    def starts(self) -> int:
        """Body nodes started so far (they count against the run's steps)."""
        return sum(isinstance(f, NodeStarted) for facts in self.facts.values() for f in facts)

    def load(self, history: Iterable[EventPayload]) -> None:
        for payload in history:
            if isinstance(payload, ev.WorkflowBodyNodeRecorded):
                self._absorb(payload)

    def recorded(self, scope: str) -> Sequence[Fact]:
        return tuple(self.facts.get(scope, ()))

    async def record(self, scope: str, fact: Fact) -> None:
        payload = _payload(scope, fact, self.mask)
        await self._record(payload)
        self._absorb(payload)

    async def forget(self, scope: str) -> None:
        payload = ev.WorkflowBodyNodeRecorded(scope=scope, kind=FORGOTTEN)
        await self._record(payload)
        self._absorb(payload)

    def _absorb(self, p: ev.WorkflowBodyNodeRecorded) -> None:
        if p.kind == FORGOTTEN:
            self.facts.pop(p.scope, None)
            return
        fact: Fact
        if p.kind == "succeeded":
            fact = NodeSucceeded(p.node_id, p.outputs, p.handle, p.updates)
        elif p.kind == "failed":
            fact = NodeFailed(p.node_id, p.error, p.error_type)
        else:
            fact = NodeStarted(p.node_id)
        self.facts.setdefault(p.scope, []).append(fact)


def _payload(scope: str, fact: Fact, mask: Callable[[Any], Any]) -> ev.WorkflowBodyNodeRecorded:
    if isinstance(fact, NodeSucceeded):
        return ev.WorkflowBodyNodeRecorded(
            scope=scope, kind="succeeded", node_id=fact.node_id,
            outputs=mask(dict(fact.outputs)), handle=fact.handle,
            updates=mask({k: dict(v) for k, v in fact.updates.items()}))
    if isinstance(fact, NodeFailed):
        return ev.WorkflowBodyNodeRecorded(scope=scope, kind="failed", node_id=fact.node_id,
                                           error=mask(fact.error), error_type=fact.error_type)
    if isinstance(fact, NodeStarted):
        return ev.WorkflowBodyNodeRecorded(scope=scope, kind="started", node_id=fact.node_id)
    raise TypeError(f"a body records node facts, not {type(fact).__name__}")
