"""The engine's record of iteration and loop bodies (`BodyJournal` of the executor interface):
one key-value stream per run, an entry per body fact with its scope, appended before
anything that depends on it starts. A member taking the run over loads it once and each
container's passes replay what their scope recorded, so finished body nodes never run again.

The facts are kept beside the run's events, not among them: a body node runs once per index,
which the run's aggregate (one result per node) does not model. Values are masked as the
run's events are. A member that lost the run may still append a late result for a node the
next member re-runs; the fold applies the first result of a node, which is a result of the
same execution (same idempotency key), so nothing breaks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import orjson

from adapters.kv.base import KeyValueStore
from schemas.workflow.naming import body_journal_key
from workflow_graph.scheduler import Fact, NodeFailed, NodeStarted, NodeSucceeded

PAGE = 1000  # entries read per round trip when loading
FORGET = "forget"


class KvBodyJournal:
    def __init__(self, kv: KeyValueStore, run_id: UUID, ttl: int,
                 mask: Callable[[Any], Any]) -> None:
        self.kv = kv
        self.key = body_journal_key(run_id)
        self.ttl = ttl
        self.mask = mask
        self.facts: dict[str, list[Fact]] = {}

    @property
    def starts(self) -> int:
        """Body nodes started so far (they count against the run's steps)."""
        return sum(isinstance(f, NodeStarted) for facts in self.facts.values() for f in facts)

    async def load(self) -> None:
        after = "0"
        while entries := await self.kv.read(self.key, after, count=PAGE, block_ms=0):
            for entry_id, entry in entries:
                scope, fact = _decode(entry)
                if fact is None:
                    self.facts.pop(scope, None)
                else:
                    self.facts.setdefault(scope, []).append(fact)
                after = entry_id

    def recorded(self, scope: str) -> Sequence[Fact]:
        return tuple(self.facts.get(scope, ()))

    async def record(self, scope: str, fact: Fact) -> None:
        await self.kv.append(self.key, [_encode(scope, self.mask(_fields(fact)))], self.ttl)
        self.facts.setdefault(scope, []).append(fact)

    async def forget(self, scope: str) -> None:
        await self.kv.append(self.key, [_encode(scope, {"kind": FORGET})], self.ttl)
        self.facts.pop(scope, None)


def _fields(fact: Fact) -> dict[str, Any]:
    if isinstance(fact, NodeSucceeded):
        return {"kind": "succeeded", "node_id": fact.node_id, "outputs": dict(fact.outputs),
                "handle": fact.handle,
                "updates": {k: dict(v) for k, v in fact.updates.items()}}
    if isinstance(fact, NodeFailed):
        return {"kind": "failed", "node_id": fact.node_id, "error": fact.error,
                "error_type": fact.error_type}
    if isinstance(fact, NodeStarted):
        return {"kind": "started", "node_id": fact.node_id}
    raise TypeError(f"a body records node facts, not {type(fact).__name__}")


def _encode(scope: str, fields: dict[str, Any]) -> bytes:
    return orjson.dumps({"scope": scope, **fields}, default=str)


def _decode(entry: bytes) -> tuple[str, Fact | None]:
    """The scope and fact of an entry; None: the scope's facts before it are forgotten."""
    item = orjson.loads(entry)
    if item["kind"] == FORGET:
        return item["scope"], None
    if item["kind"] == "succeeded":
        return item["scope"], NodeSucceeded(item["node_id"], item["outputs"], item["handle"],
                                            item["updates"])
    if item["kind"] == "failed":
        return item["scope"], NodeFailed(item["node_id"], item["error"], item["error_type"])
    return item["scope"], NodeStarted(item["node_id"])
