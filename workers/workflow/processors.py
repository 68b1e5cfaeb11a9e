"""The workflow context's stream processor (the engine, `workflow.runs`) and its job: runs
left `running` past WORKFLOW_MAX_EXECUTION_TIME (no member was up to end them) are failed."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.bus.base import Message
from adapters.embeddings.models import EmbeddingModels
from adapters.kv.base import KeyValueStore
from adapters.storage.base import Storage
from adapters.vector.base import VectorStore
from commands.aggregate import Context
from config import Settings
from events.listener import Notifications
from events.registry import EventTypes
from events.store import EventStore
from projections.read_cache import following
from projections.versions import ReadModels
from schemas.workflow import events as ev
from workers.knowledge.indexing import caused_by
from workers.runtime import Processor, by_type, decoding
from workers.workflow.engine import Engine
from workers.workflow.nodes import EXECUTORS
from workers.workflow.services import workflow_services

SWEEP_STATE_KEY = "workflow.overdue-sweep"
SWEEP_BATCH = 1000
SWEEP_MAX_BATCHES = 50  # per job run: a long backlog is caught up over several runs
SWEEP_EVERY_SECONDS = 10.0
# The sweep ends a run for good: its stream is written by nothing after it (no message's
# fence is ever this high).
SWEEP_FENCE = 2**52


def run_processor(topic: str, *, settings: Settings, event_types: EventTypes,
                  store: EventStore, engine: AsyncEngine, read_models: ReadModels,
                  kv: KeyValueStore, storage: Storage, embedding_models: EmbeddingModels,
                  vectors: VectorStore, keywords: VectorStore,
                  notifications: Notifications | None) -> Processor:
    # The models nodes call are read once per process while no projection notice names
    # them (nothing is kept without a listener to hear the notices).
    workflows = Engine(workflow_services(
        settings=settings, engine=engine, read_models=read_models, kv=kv, storage=storage,
        store=store, embedding_models=embedding_models, vectors=vectors, keywords=keywords,
        models=None if notifications is None else following(notifications)), EXECUTORS)

    async def on_dead_letter(message: Message, exc: BaseException) -> None:
        event = event_types.envelope_from_json(message.value)
        await workflows.fail(event.aggregate_id, caused_by(event),
                             "The run could not be executed (an internal error); it was "
                             "stopped after repeated attempts.")

    return Processor(group=topic, topics=[topic], on_dead_letter=on_dead_letter,
                     overlap=settings.WORKFLOW_CONCURRENCY,
                     # nodes call models and outside services: a replay never runs them
                     # again unless it allows side effects
                     side_effects=True,
                     handle=decoding(event_types, by_type(dict.fromkeys(
                         (ev.WorkflowRunStarted, ev.WorkflowHumanInputSubmitted,
                          ev.WorkflowHumanInputTimedOut, ev.WorkflowRunStopped),
                         workflows.handle))))


async def fail_overdue_runs(*, settings: Settings, store: EventStore, engine: AsyncEngine,
                            read_models: ReadModels, kv: KeyValueStore, storage: Storage,
                            embedding_models: EmbeddingModels, vectors: VectorStore,
                            keywords: VectorStore) -> None:
    """Follow the store's log for runs that start and end (from a cursor kept in the
    key-value store), and fail those running longer than WORKFLOW_MAX_EXECUTION_TIME plus
    one sweep period (a live engine fails its own at the limit; this catches the runs no
    member was up to end). Paused runs do not count: waiting for a human is not running."""
    raw = await kv.get(SWEEP_STATE_KEY)
    state: dict[str, Any] = orjson.loads(raw) if raw else {"position": 0, "running": {}}
    running: dict[str, list[Any]] = state["running"]  # run id -> [active since, paused at]
    for _ in range(SWEEP_MAX_BATCHES):
        events = await asyncio.to_thread(store.read_from, state["position"], SWEEP_BATCH)
        if not events:
            break
        for event in events:
            run, at = str(event.aggregate_id), event.occurred_at.timestamp()
            p = event.payload
            if isinstance(p, ev.WorkflowRunStarted):
                running[run] = [at, None]
            elif run not in running:
                continue
            elif isinstance(p, ev.RUN_ENDS):
                del running[run]
            elif isinstance(p, ev.WorkflowRunPaused):
                running[run][1] = at
            elif isinstance(p, ev.WorkflowHumanInputSubmitted | ev.WorkflowHumanInputTimedOut) \
                    and running[run][1] is not None:
                running[run] = [running[run][0] + at - running[run][1], None]
        state["position"] = events[-1].position
    limit = settings.WORKFLOW_MAX_EXECUTION_TIME
    overdue = [UUID(run) for run, (since, paused) in running.items()
               if paused is None and time.time() - since > limit + SWEEP_EVERY_SECONDS]
    if overdue:
        workflows = Engine(workflow_services(
            settings=settings, engine=engine, read_models=read_models, kv=kv,
            storage=storage, store=store, embedding_models=embedding_models, vectors=vectors,
            keywords=keywords), EXECUTORS)
        for run_id in overdue:
            ctx = Context(tenant_id=None, actor_id=None, correlation_id=uuid4(),
                          causation_id=uuid4())
            await workflows.fail(run_id, ctx, f"Max execution time {limit:g}s reached.",
                                 fence=SWEEP_FENCE)
            del running[str(run_id)]
    await kv.set(SWEEP_STATE_KEY, orjson.dumps(state).decode())
