"""Human-input forms that nobody answers in time: a paused run holds no worker, so something
must notice its form's expiry. The form deadlines processor files each paused run's form
under the minute it expires (a key-value stream per minute); the form timeout job, every
FORM_TIMEOUT_CHECK_SECONDS, goes through the minutes that passed since its last pass and
sends TimeOutHumanInput for each form filed there. The run's aggregate decides: a form
answered meanwhile, or a run gone on or ended, records nothing; so a minute gone through
twice (a job cut short, a second leader) times nothing out twice."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from uuid import UUID, uuid4

import orjson

from adapters.kv.base import KeyValueStore
from commands.executor import execute
from commands.registry import CommandHandlers
from events.envelope import Envelope
from events.registry import EventTypes
from events.store import EventStore
from schemas.base import CommandEnvelope
from schemas.workflow import commands as cmd
from schemas.workflow import events as ev
from workers.runtime import Processor, by_type, decoding

log = logging.getLogger(__name__)
FORM_TIMEOUT_CHECK_SECONDS = 30.0
DEADLINES_CURSOR_KEY = "workflow:form-deadlines:done"  # the last minute gone through
# A first pass (no cursor yet: the job never ran here) looks this far back. Each minute is
# a round trip to the key-value store: a short look back keeps the scheduler's pass short.
FIRST_PASS_MINUTES = 60
KEEP_PAST_EXPIRY_SECONDS = 7 * 86400  # a minute's list outlives its minute by this much
READ_BATCH = 500


def deadline_key(minute: int) -> str:
    return f"workflow:form-deadlines:{minute}"


def minute_of(seconds: float) -> int:
    return math.floor(seconds / 60)


def form_deadlines_processor(topic: str, *, event_types: EventTypes,
                             kv: KeyValueStore) -> Processor:
    async def file_form(event: Envelope[ev.WorkflowRunPaused]) -> None:
        p = event.payload
        entry = orjson.dumps({"run_id": str(event.aggregate_id), "form_token": p.form_token})
        ttl = max(1, math.ceil(p.expires_at - time.time()) + KEEP_PAST_EXPIRY_SECONDS)
        # filed again by a redelivery: harmless, the aggregate times a form out once
        await kv.append(deadline_key(minute_of(p.expires_at)), [entry], ttl=ttl)

    return Processor(group=topic, topics=[topic], handle=decoding(event_types, by_type({
        ev.WorkflowRunPaused: file_form})))


async def time_out_human_input_forms(*, kv: KeyValueStore, store: EventStore,
                                     handlers: CommandHandlers) -> None:
    """The form timeout job: forms filed under the minutes that passed since the last pass.
    The minute now running is left for the next pass (its forms are not all due yet)."""
    now = time.time()
    done_text = await kv.get(DEADLINES_CURSOR_KEY)
    last_done = minute_of(now) - 1
    first = int(done_text) + 1 if done_text else last_done - FIRST_PASS_MINUTES
    for minute in range(first, last_done + 1):
        for run_id, token in await _filed(kv, deadline_key(minute)):
            command = cmd.TimeOutHumanInput(run_id=run_id, form_token=token, now=now)
            cause = uuid4()
            outcome = await asyncio.to_thread(execute, store, handlers, CommandEnvelope.of(
                command, aggregate_id=run_id, tenant_id=None, actor_id=None,
                correlation_id=cause))
            if outcome.result.get("timed_out"):
                log.info("human input form timed out",
                         extra={"workflow_run_id": str(run_id), "minute": minute})
    if first <= last_done:
        # once the pass is through (one cut short goes through its minutes again)
        await kv.set(DEADLINES_CURSOR_KEY, str(last_done))


async def _filed(kv: KeyValueStore, key: str) -> list[tuple[UUID, str]]:
    filed, after = [], "0"
    while entries := await kv.read(key, after, count=READ_BATCH, block_ms=0):
        for _, raw in entries:
            entry = orjson.loads(raw)
            filed.append((UUID(entry["run_id"]), entry["form_token"]))
        after = entries[-1][0]
    return filed
