"""The workflow engine: drives a run from its recorded history (the `workflow.runs` work
topic's handler; one run's messages are one partition key's, so one member at a time).

Handling a run's message (it started, or its human input was submitted or timed out): load
the run's history, fold it (`workflow_graph.scheduler.fold`) and start what it says, each
node's executor concurrently with the others ready; record the nodes that start together in
one commit, and each result, with the starts it makes possible or the run's end, in one
commit, before anything depending on it starts. A member that dies mid-run is replaced (the
message is redelivered) by one that folds the same history: finished nodes never run again,
the ones in flight restart (attempt + 1, same idempotency key). Each commit is made only
while this member owns the message (`still_owner`) and on the run's version it loaded (the
store refuses a stale writer).

The run's task stream shows what is recorded (Dify's SSE, `run_stream.py`), plus what
executors emit (LLM chunks). A stop request (any gateway, key-value store) is looked for
every STOP_POLL_SECONDS while nodes run (one read for all the runs a process drives,
`StopWatch`): their tasks are cancelled and the run recorded
stopped. WORKFLOW_MAX_EXECUTION_TIME and _STEPS end the run failed with the reason.
A human-input node pauses the run (no worker is held); its submission resumes it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import orjson

from adapters.secrets import Keyring, SecretUnreadable
from adapters.transient import is_transient
from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun, WorkflowVersion
from events.envelope import Envelope
from events.store import ConcurrencyConflict
from projections.keyring import workspace_keyring
from schemas.base import EventPayload
from schemas.conversation.naming import FACT_FIELD
from schemas.workflow import events as ev
from schemas.workflow.forms import filled_event_data, required_event_data
from schemas.workflow.naming import (
    new_form_token,
    node_execution_id,
    node_idempotency_key,
    node_outputs_key,
    run_owner,
)
from schemas.workflow.stream import StreamHead, node_fields, node_finished_fields
from workers.conversation.task_stream import StopWatch, TokenWriter
from workers.knowledge.indexing import caused_by
from workers.ownership import LostOwnership, current_fence, still_owner
from workers.workflow.body_journal import EventBodyJournal
from workers.workflow.chatflow import finish_chat_message
from workers.workflow.history import (
    Environment,
    Secrets,
    active_since,
    conversation_defaults,
    facts_of,
    holds_secrets,
    open_environment,
)
from workers.workflow.nodes.base import (
    Executor,
    HumanInputRequired,
    NodeCall,
    NodeError,
    NodeResult,
    RunInfo,
    StepBudget,
    unsupported,
)
from workers.workflow.nodes.human_input import result_of_answer
from workers.workflow.run_stream import RunStream
from workers.workflow.services import WorkflowServices
from workflow_graph.graph import (
    CONTAINER_NODE_TYPES,
    Graph,
    Node,
    RetryPolicy,
    parallel_depth,
    parse_graph,
)
from workflow_graph.pure_nodes import PURE_NODE_TYPES
from workflow_graph.scheduler import (
    EXCEPTION_STRATEGIES,
    Fact,
    Limits,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    RunState,
    RunStatus,
    fold,
)
from workflow_graph.variables import VariablePool

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2  # a stop request takes effect within this (plus a commit)
VERSION_CACHE_SIZE = 512


@dataclass(frozen=True)
class Version:
    spec: ev.WorkflowVersionCreated
    graph: Graph


class Versions:
    """Workflow versions are immutable: each is read from the store once per process (the
    VERSION_CACHE_SIZE most recently used kept)."""

    def __init__(self, services: WorkflowServices) -> None:
        self.services = services
        self._cache: OrderedDict[UUID, Version] = OrderedDict()

    async def get(self, workflow_id: UUID, *, fresh: bool = False) -> Version:
        """`fresh`: read again, for a version whose secrets were re-sealed since (`eddy
        reset-encrypt-key-pair`: a version's secrets are the one thing that changes)."""
        if workflow_id in self._cache and not fresh:
            self._cache.move_to_end(workflow_id)
            return self._cache[workflow_id]
        events = await asyncio.to_thread(self.services.store.load, workflow_id)
        version = WorkflowVersion.replay(workflow_id, events)
        if version.spec is None:
            raise LookupError(f"workflow version {workflow_id} does not exist")
        self._cache[workflow_id] = Version(version.spec, parse_graph(version.spec.graph))
        if len(self._cache) > VERSION_CACHE_SIZE:
            self._cache.popitem(last=False)
        return self._cache[workflow_id]


@dataclass
class Engine:
    """What every run's execution shares in one process."""

    services: WorkflowServices
    executors: Mapping[str, Executor]
    versions: Versions = field(init=False)
    stops: StopWatch = field(init=False)

    def __post_init__(self) -> None:
        self.versions = Versions(self.services)
        self.stops = StopWatch(self.services.kv, STOP_POLL_SECONDS)

    @property
    def limits(self) -> Limits:
        s = self.services.settings
        return Limits(max_execution_steps=s.WORKFLOW_MAX_EXECUTION_STEPS,
                      max_execution_time=s.WORKFLOW_MAX_EXECUTION_TIME)

    async def handle(self, event: Envelope[EventPayload]) -> None:
        """A run's message: drive the run from its history (the message itself only says
        that there is something to do)."""
        try:
            await RunExecution(self, event.aggregate_id, caused_by(event)).drive()
        except RunChanged:
            await RunExecution(self, event.aggregate_id, caused_by(event)).settle()

    async def fail(self, run_id: UUID, ctx: Context, reason: str,
                   fence: int | None = None) -> None:
        """End the run failed (its message keeps failing, or it ran past its time), unless it
        ended already; its stream is closed either way. `fence`: the stream writer's, when
        not the current message's (the overdue-run sweep's)."""
        try:
            await RunExecution(self, run_id, ctx, fence).fail(reason)
        except RunChanged:
            await RunExecution(self, run_id, ctx, fence).settle()


class RunChanged(Exception):
    """The run's history grew under us (the store refused our commit) while we still own
    its message: another writer ended it."""


@dataclass
class NodeOutcome:
    node_id: str
    result: NodeResult | None = None
    error: NodeError | None = None
    pause: HumanInputRequired | None = None
    elapsed: float = 0.0


class RunExecution:
    """One attempt at driving one run, from its history."""

    def __init__(self, engine: Engine, run_id: UUID, ctx: Context,
                 fence: int | None = None) -> None:
        self.e = engine
        self.fence = current_fence() if fence is None else fence
        self.s = engine.services
        self.run_id = run_id
        self.ctx = ctx
        self.lock = asyncio.Lock()  # one commit at a time on the run's aggregate
        self.facts: list[Fact] = []
        self.history: list[Envelope[EventPayload]] = []
        self.started: dict[str, Envelope[ev.WorkflowNodeStarted]] = {}
        self.outputs: dict[str, Mapping[str, Any]] = {}  # succeeded nodes' (full) outputs
        self.finished: set[str] = set()
        self.retries: dict[str, int] = {}
        self.total_tokens = 0
        self.run_outputs: Mapping[str, Any] | None = None  # kept in storage when large
        # WORKFLOW_MAX_EXECUTION_STEPS shared with iteration/loop bodies: top-level starts
        # and body starts (counted from the history and the body journal at the first fold)
        self.steps: StepBudget | None = None
        self.journal: EventBodyJournal | None = None  # when the graph has iteration/loop nodes
        self.paused: ev.WorkflowRunPaused | None = None
        self.resolution: ev.WorkflowHumanInputSubmitted | ev.WorkflowHumanInputTimedOut | \
            None = None

    # --- loading -------------------------------------------------------------------------

    async def _load(self) -> bool:
        """The run's history, version and stream; False when there is no run to drive."""
        history = await self._load_run()
        if history is None:
            return False
        p = self.begun
        self.version = await self.e.versions.get(p.workflow_id)
        try:
            self.environment = await self._open_environment()
        except SecretUnreadable:
            self.version = await self.e.versions.get(p.workflow_id, fresh=True)
            self.environment = await self._open_environment()
        # a webhook or schedule run starts at its trigger node, the graph's other roots
        # (the start node, other triggers) are skipped
        self.graph = self.version.graph if p.root_node_id is None else replace(
            self.version.graph, root_id=p.root_node_id)
        self.mask = self.environment.secrets.mask
        # advanced-chat: the conversation variables as the conversation's previous run left
        # them (the chatflow processor read them), over the version's defaults
        facts = await facts_of(history, self.s.storage, self.environment.values, {
            **conversation_defaults(self.version.spec.conversation_variables),
            **self.begun.conversation_variables})
        outputs = {f.node_id: f.outputs for f in facts if isinstance(f, NodeSucceeded)}
        for event in history:
            self._absorb(event, outputs)
        self.facts = facts
        ended = history[-1].payload
        if isinstance(ended, ev.WorkflowRunSucceeded) and ended.outputs_ref is not None:
            self.run_outputs = orjson.loads(await self.s.storage.load(ended.outputs_ref))
        if any(n.type in CONTAINER_NODE_TYPES for n in self.graph.nodes):
            self.journal = EventBodyJournal(self._record_body_fact, mask=self.mask)
            self.journal.load(e.payload for e in history)
        await self.stream.claim()
        # What an earlier attempt recorded but did not stream (it died in between).
        await self._publish(history)
        return True

    async def _open_environment(self) -> Environment:
        variables = self.version.spec.environment_variables
        # a version with no secret to open does not read the workspace's keys (a read per run)
        keyring = await workspace_keyring(
            self.s.read_models.engine, self.s.settings.SECRET_KEY, self.tenant_id,
        ) if holds_secrets(variables) else Keyring(self.s.settings.SECRET_KEY)
        return open_environment(variables, keyring, self.tenant_id)

    async def _load_run(self) -> list[Envelope[EventPayload]] | None:
        """The run's history, aggregate and stream (not its graph: a run whose version
        cannot be read can still be failed)."""
        history = await asyncio.to_thread(self.s.store.load, self.run_id)
        self.uow = UnitOfWork(self.s.store, self.ctx, load=lambda _: history)
        self.run = self.uow.get(WorkflowRun, self.run_id)
        if self.run.started is None:
            return None
        p = self.begun = self.run.started
        self.tenant_id = self.run.tenant_id
        self.graph = Graph(nodes=(), edges=())  # read by _load (a run may fail without it)
        self.mask = Secrets().mask
        self.began_at = active_since(history)
        self.head = StreamHead(task_id=p.task_id, run_id=self.run_id,
                               workflow_id=p.workflow_id, mode=p.mode,
                               created_at=int(history[0].occurred_at.timestamp()),
                               conversation_id=p.conversation_id, message_id=p.message_id)
        self.info = RunInfo(run_id=self.run_id, task_id=p.task_id, app_id=p.app_id,
                            tenant_id=self.tenant_id,  # type: ignore[arg-type]
                            workflow_id=p.workflow_id, mode=p.mode, user=p.user,
                            end_user_id=p.end_user_id, conversation_id=p.conversation_id,
                            message_id=p.message_id, call_depth=p.call_depth, inputs=p.inputs)
        self.stream = RunStream.of(self.s.kv, p.task_id, run_owner(p.app_id, p.end_user_id),
                                   self.s.settings.TASK_STREAM_TTL_SECONDS, self.fence)
        self.tokens = TokenWriter(self.stream.stream)
        return history

    def _absorb(self, event: Envelope[EventPayload],
                outputs: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep what the stream and the next decisions need of a recorded event."""
        self.history.append(event)
        p = event.payload
        if isinstance(p, ev.WorkflowNodeStarted):
            self.started[p.node_id] = event  # type: ignore[assignment]
        elif isinstance(p, ev.WorkflowNodeSucceeded):
            self.finished.add(p.node_id)
            self.outputs[p.node_id] = outputs.get(p.node_id, p.outputs)
            self.total_tokens += _tokens_of(p)
        elif isinstance(p, ev.WorkflowNodeFailed):
            self.finished.add(p.node_id)
        elif isinstance(p, ev.WorkflowNodeRetried):
            self.retries[p.node_id] = self.retries.get(p.node_id, 0) + 1
        elif isinstance(p, ev.WorkflowRunPaused):
            self.paused, self.resolution = p, None
        elif isinstance(p, ev.WorkflowHumanInputSubmitted | ev.WorkflowHumanInputTimedOut):
            self.resolution = p

    # --- driving -------------------------------------------------------------------------

    async def drive(self) -> None:
        if not await self._load():
            return
        if self.run.ended or self.run.status == "paused":
            return  # a redelivery: the stream was completed from the history above
        try:
            if await self.stream.stop_requested():
                await self._stop([])
            elif self.begun.call_depth > self.s.settings.WORKFLOW_CALL_MAX_DEPTH:
                await self._record([self._failed_run(
                    f"Max workflow call depth {self.s.settings.WORKFLOW_CALL_MAX_DEPTH} "
                    "reached.")])
            elif self.begun.node_id is not None:
                await self._single_node(self.begun.node_id)
            elif parallel_depth(self.graph) > self.s.settings.WORKFLOW_PARALLEL_DEPTH_LIMIT:
                await self._record([self._failed_run(
                    "Exceeds the maximum parallel depth limit of "
                    f"{self.s.settings.WORKFLOW_PARALLEL_DEPTH_LIMIT}.")])
            else:
                await self._run()
        finally:
            await self.tokens.drain()

    async def fail(self, reason: str) -> None:
        history = await self._load_run()
        if history is None or self.run.ended:
            return
        for event in history:
            self._absorb(event, {})
        await self.stream.claim()
        await self._record([self._failed_run(reason)])

    async def settle(self) -> None:
        """After our commit was refused though we own the message: another writer ended the
        run (the overdue-run sweep), and loading it streamed how; anything else means
        another member drives it now."""
        if await self._load() and not self.run.ended:
            raise LostOwnership(f"run {self.run_id} is being written by another member")

    async def _run(self) -> None:
        running: dict[str, asyncio.Task[NodeOutcome]] = {}
        done: list[NodeOutcome] = []
        pause: NodeOutcome | None = None
        deadline = self.began_at + self.e.limits.max_execution_time
        stop = self.e.stops.watch(self.stream.stream)
        try:
            batch = self._resumed_node()
            while True:
                for outcome in done:
                    running.pop(outcome.node_id)
                    if outcome.pause is not None:
                        pause = pause or outcome
                    else:
                        batch.append(await self._result(outcome))
                done = []
                while True:
                    state = fold(self.graph, [*self.facts, *(f for _, f in batch)],
                                 self.e.limits, now=time.time())
                    payloads = [p for p, _ in batch]
                    starts: list[Node] = []
                    if state.status is RunStatus.FAILED:
                        payloads.append(self._failed_run(state.error or "failed", state,
                                                         batch))
                    elif state.status is RunStatus.SUCCEEDED:
                        payloads.append(await self._succeeded_run(state, batch))
                    elif pause is not None:
                        if not running:
                            payloads.append(self._paused(pause))
                    else:
                        starts = [self.graph.node(n) for n in state.to_start
                                  if n not in running]
                        if self.steps is None:
                            self.steps = StepBudget(self.e.limits.max_execution_steps, used=(
                                state.steps + (self.journal.starts if self.journal else 0)))
                        inline = [n for n in starts if self._inline(n)]
                        if inline:
                            # their starts and results go into this commit, and what
                            # they make ready is folded again before it is made
                            await self._run_inline(inline, state, batch)
                            continue
                        payloads += self._starts(starts, batch)
                        self.steps.used += sum(n.id in state.ready for n in starts)
                    break
                batch = []
                await self._record(payloads)
                if self.run.status == "paused" and await self.stream.stop_requested():
                    # asked to stop while the pause was being recorded: the stop command
                    # found the run running then and left it to us, so end it now
                    await self._stop([])
                if self.run.ended or self.run.status == "paused":
                    return
                for node in starts:
                    running[node.id] = asyncio.create_task(self._execute(node, state.pool),
                                                           name=f"node {node.id}")
                if not running:
                    raise RuntimeError(f"run {self.run_id} is running with nothing to run")
                finished, _ = await asyncio.wait(
                    [*running.values(), stop], return_when=asyncio.FIRST_COMPLETED,
                    timeout=max(0.0, min(STOP_POLL_SECONDS, deadline - time.time())))
                done = [t.result() for t in finished if t is not stop]
                await self.stream.keep()
                if stop.done():
                    await self._cancel(running)
                    await self._stop([await self._result(o) for o in done
                                      if o.pause is None])
                    return
                if time.time() > deadline:
                    await self._cancel(running)
                    running.clear()  # their results will never be recorded
                    done = []
        finally:
            self.e.stops.unwatch(stop)
            await self._cancel(running)

    def _inline(self, node: Node) -> bool:
        """A pure node (its result from the variable pool alone: start, end, answer,
        if-else) runs before its start is recorded, and its start and result are recorded
        together: a member dying before that commit leaves no trace of it, and the next
        computes the same result. Not a node an earlier attempt recorded starting (a
        takeover restarts it as any other), nor one with a retry strategy."""
        return node.type in PURE_NODE_TYPES and node.id not in self.started \
            and self.e.executors.get(node.type) is not None \
            and RetryPolicy.of(node).max_retries == 0

    async def _run_inline(self, nodes: Sequence[Node], state: RunState,
                          batch: list[tuple[EventPayload, Fact]]) -> None:
        """Add the nodes' starts and results to the commit being built (`batch`)."""
        assert self.steps is not None
        for node, started in zip(nodes, self._starts(nodes, batch), strict=True):
            batch.append((started, NodeStarted(node.id)))
        self.steps.used += sum(n.id in state.ready for n in nodes)
        for node in nodes:
            batch.append(await self._result(await self._execute(node, state.pool)))

    async def _single_node(self, node_id: str) -> None:
        """A debug run of one node: the run's inputs are its variables (`node.var`, or
        Dify's `#node.var#`), nothing else runs."""
        node = self.graph.node(node_id)
        pool = VariablePool.for_run(system=self.begun.system,
                                    environment=self.environment.values)
        for key, value in self.begun.inputs.items():
            parts = key.strip("#").split(".")
            if len(parts) >= 2:
                pool = pool.with_outputs(parts[0], {parts[1]: value})
        if node_id not in self.finished:
            await self._record(self._starts([node]))
            outcome = await self._execute(node, pool)
            if outcome.pause is not None:
                outcome = NodeOutcome(node_id, error=NodeError(
                    "human input cannot be asked for in a single-node run"))
            payload, _ = await self._result(outcome)
            await self._record([payload])
        last = self.history[-1].payload
        if isinstance(last, ev.WorkflowNodeSucceeded):
            await self._record([ev.WorkflowRunSucceeded(
                outputs=self.mask(dict(self.outputs[node_id])),
                elapsed_time=self._elapsed(), total_tokens=self.total_tokens,
                total_steps=1)])
        else:
            error = last.error if isinstance(last, ev.WorkflowNodeFailed) else "failed"
            await self._record([self._failed_run(error)])

    async def _cancel(self, running: Mapping[str, asyncio.Task[NodeOutcome]]) -> None:
        for task in running.values():
            task.cancel()
        if running:
            await asyncio.wait(running.values())

    # --- one node ------------------------------------------------------------------------

    async def _execute(self, node: Node, pool: VariablePool) -> NodeOutcome:
        """Run the node's executor, with its retry strategy (each failed attempt recorded
        as a retry); NodeError and unexpected errors become the node's failure, transient
        ones fail the message (it is redelivered, and the node restarts)."""
        executor = self.e.executors.get(node.type)
        started = time.monotonic()
        if executor is None:
            return NodeOutcome(node.id, error=unsupported(node))
        retry = RetryPolicy.of(node)
        # (a node run inline has no recorded start yet: its first attempt)
        attempt = self.started[node.id].payload.attempt if node.id in self.started else 0
        while True:
            call = NodeCall(node=node, graph=self.graph, pool=pool, run=self.info,
                            services=self.s, idempotency_key=node_idempotency_key(
                                self.run_id, node.id), emit=self._emit, attempt=attempt,
                            executors=self.e.executors, steps=self.steps,
                            journal=self.journal)
            try:
                result = await executor(call)
                return NodeOutcome(node.id, result=result,
                                   elapsed=time.monotonic() - started)
            except HumanInputRequired as pause:
                return NodeOutcome(node.id, pause=pause)
            except NodeError as error:
                failure = error
            except LostOwnership:
                raise  # the run moved to another member: nothing of this attempt stands
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("node executor failed", extra={
                    "run_id": str(self.run_id), "node_id": node.id, "node_type": node.type})
                failure = NodeError(str(exc) or repr(exc), type(exc).__name__)
            if self.retries.get(node.id, 0) >= retry.max_retries:
                return NodeOutcome(node.id, error=failure, elapsed=time.monotonic() - started)
            attempt += 1
            await self._record([ev.WorkflowNodeRetried(
                node_id=node.id, execution_id=node_execution_id(self.run_id, node.id),
                attempt=attempt, error=self.mask(failure.message))])
            await asyncio.sleep(retry.interval_seconds)

    async def _emit(self, name: str, data: Mapping[str, Any]) -> None:
        if self.begun.mode == "advanced-chat" and name == "text_chunk":
            return  # advanced-chat streams what answer nodes say, as `message` events
        self.tokens.add(self.head.event(name, self.mask(dict(data))))

    async def _result(self, outcome: NodeOutcome) -> tuple[EventPayload, Fact]:
        """The payload recording a node's result and the scheduler's fact of it (outputs
        masked; too large for an event: kept in storage, referenced)."""
        node_id = outcome.node_id
        execution_id = node_execution_id(self.run_id, node_id)
        if outcome.error is not None:
            error = self.mask(outcome.error.message)
            return (ev.WorkflowNodeFailed(node_id=node_id, execution_id=execution_id,
                                          error=error, error_type=outcome.error.error_type,
                                          elapsed_time=outcome.elapsed),
                    NodeFailed(node_id, error, outcome.error.error_type))
        result = outcome.result
        assert result is not None
        outputs = self.mask(dict(result.outputs))
        updates = {scope: self.mask(dict(values)) for scope, values in result.updates.items()}
        self.outputs[node_id] = outputs
        payload = ev.WorkflowNodeSucceeded(
            node_id=node_id, execution_id=execution_id, handle=result.handle,
            inputs=self.mask(dict(result.inputs)),
            process_data=self.mask(dict(result.process_data)), updates=updates,
            elapsed_time=outcome.elapsed, usage=dict(result.usage) if result.usage else None)
        payload = await self._inline_or_stored(payload, outputs)
        return payload, NodeSucceeded(node_id, outputs, result.handle, updates)

    async def _inline_or_stored(self, payload: ev.WorkflowNodeSucceeded,
                                outputs: Mapping[str, Any]) -> ev.WorkflowNodeSucceeded:
        encoded = orjson.dumps(outputs, default=str)
        if len(encoded) <= self.s.settings.WORKFLOW_EVENT_INLINE_BYTES:
            return payload.model_copy(update={"outputs": outputs})
        key = node_outputs_key(self.tenant_id, self.run_id, payload.execution_id)
        await self.s.storage.save(key, encoded)
        return payload.model_copy(update={"outputs_ref": key})

    def _resumed_node(self) -> list[tuple[EventPayload, Fact]]:
        """The paused node's result from its form's submission (or timeout), recorded
        without running its executor again."""
        if self.paused is None or self.resolution is None \
                or self.paused.node_id in self.finished:
            return []
        node_id = self.paused.node_id
        answered = result_of_answer(self.resolution)
        outputs, handle = self.mask(dict(answered.outputs)), answered.handle
        self.outputs[node_id] = outputs
        return [(ev.WorkflowNodeSucceeded(
            node_id=node_id, execution_id=node_execution_id(self.run_id, node_id),
            handle=handle, outputs=outputs), NodeSucceeded(node_id, outputs, handle))]

    # --- what is recorded ----------------------------------------------------------------

    def _starts(self, nodes: Sequence[Node],
                batch: Sequence[tuple[EventPayload, Fact]] = ()) -> list[EventPayload]:
        """`batch`: what the commit being built records already (inline nodes' starts)."""
        index = len({e.payload.node_id for e in self.started.values()} | {
            p.node_id for p, _ in batch if isinstance(p, ev.WorkflowNodeStarted)})
        out: list[EventPayload] = []
        for node in nodes:
            before = self.started.get(node.id)
            if before is not None:  # in flight when the last attempt died: again
                out.append(before.payload.model_copy(
                    update={"attempt": before.payload.attempt + 1}))
                continue
            index += 1
            out.append(ev.WorkflowNodeStarted(
                node_id=node.id, node_type=node.type, title=node.title,
                execution_id=node_execution_id(self.run_id, node.id), index=index,
                predecessor_node_id=self._predecessor(node)))
        return out

    def _predecessor(self, node: Node) -> str | None:
        return next((e.source for e in self.graph.incoming(node.id)
                     if e.source in self.finished), None)

    def _paused(self, outcome: NodeOutcome) -> ev.WorkflowRunPaused:
        assert outcome.pause is not None
        return ev.WorkflowRunPaused(
            # the token names the run: the form routes find the form from it
            node_id=outcome.node_id, form_token=new_form_token(self.run_id),
            form=self.mask(dict(outcome.pause.form)),
            expires_at=time.time() + outcome.pause.timeout_seconds)

    def _failed_run(self, error: str, state: RunState | None = None,
                    batch: Sequence[tuple[EventPayload, Fact]] = ()) -> ev.WorkflowRunFailed:
        """`batch`: the results recorded in the same commit (their tokens count)."""
        return ev.WorkflowRunFailed(error=self.mask(error), elapsed_time=self._elapsed(),
                                    total_tokens=self._tokens(batch),
                                    total_steps=state.steps if state else len(self.started))

    async def _succeeded_run(self, state: RunState,
                             batch: Sequence[tuple[EventPayload, Fact]] = ()
                             ) -> ev.WorkflowRunSucceeded:
        outputs = self.mask(dict(state.outputs))
        encoded = orjson.dumps(outputs, default=str)
        ref = None
        if len(encoded) > self.s.settings.WORKFLOW_EVENT_INLINE_BYTES:
            ref = node_outputs_key(self.tenant_id, self.run_id, self.run_id)
            await self.s.storage.save(ref, encoded)
        self.run_outputs = outputs
        return ev.WorkflowRunSucceeded(
            outputs={} if ref else outputs, outputs_ref=ref, answer=self.mask(state.answer),
            elapsed_time=self._elapsed(), total_tokens=self._tokens(batch),
            total_steps=state.steps)

    async def _stop(self, results: list[tuple[EventPayload, Fact]]) -> None:
        await self._record([*(p for p, _ in results), ev.WorkflowRunStopped(
            elapsed_time=self._elapsed(), total_tokens=self.total_tokens,
            total_steps=len(self.started))])

    def _tokens(self, batch: Sequence[tuple[EventPayload, Fact]]) -> int:
        """The run's tokens: those recorded, and those of results in the commit being built."""
        return self.total_tokens + sum(_tokens_of(p) for p, _ in batch)

    def _elapsed(self) -> float:
        return round(max(0.0, time.time() - self.began_at), 6)

    async def _record_body_fact(self, payload: EventPayload) -> None:
        await self._record([payload])

    async def _record(self, payloads: Sequence[EventPayload]) -> None:
        """Record the payloads on the run in one commit (while still the message's owner
        and on the version loaded), then stream what they show."""
        if not payloads:
            return
        async with self.lock:
            for payload in payloads:
                self.run.note(payload, self.ctx)
            events = self.uow.new_events()
            if not events:
                return
            await still_owner()
            commit = asyncio.ensure_future(asyncio.to_thread(self.uow.commit))
            try:
                await asyncio.shield(commit)
            except ConcurrencyConflict as conflict:
                raise RunChanged(str(conflict)) from conflict
            except asyncio.CancelledError:
                # (a node task stopped while recording its retry) the commit finishes
                # before the lock is let go: the next commit builds on it
                await asyncio.wait({commit})
                raise
            for event in events:
                self._absorb(event, self.outputs)
                self.facts.extend(_facts_of_live(event.payload, self.outputs))
            await self._publish(events)

    # --- the stream ----------------------------------------------------------------------

    async def _publish(self, events: Sequence[Envelope[EventPayload]]) -> None:
        """The stream events showing these recorded events (after what executors emitted)."""
        pool = fold(self.graph, self.facts, self.e.limits).pool if any(
            isinstance(e.payload, ev.WorkflowNodeFailed) for e in events) \
            and self.begun.node_id is None else None
        out: list[dict[str, Any]] = []
        for event in events:
            out += self._shown(event, pool)
        if self.begun.conversation_id is not None:
            out += await self._message_end(events)
        await self.tokens.drain()
        await self.stream.publish(out)

    async def _message_end(self, events: Sequence[Envelope[EventPayload]]
                           ) -> list[dict[str, Any]]:
        """An advanced-chat run's end: its message's end recorded on the conversation and its
        closing event (`message_end` or `error`) streamed after `workflow_finished`, with the
        same fact (a takeover streams both or neither; workers/workflow/chatflow.py)."""
        for event in events:
            if isinstance(event.payload, ev.RUN_ENDS):
                closing = await asyncio.to_thread(
                    finish_chat_message, self.s.store, self.history[0], event.payload,
                    self.ctx)
                return [{**closing, FACT_FIELD: event.aggregate_version}] if closing else []
        return []

    def _shown(self, event: Envelope[EventPayload],
               pool: VariablePool | None) -> list[dict[str, Any]]:
        p, fact, at = event.payload, event.aggregate_version, int(event.occurred_at.timestamp())
        head = self.head
        if isinstance(p, ev.WorkflowRunStarted):
            return [head.workflow_started(self.mask(p.inputs), "initial", fact)]
        if isinstance(p, ev.WorkflowNodeStarted):
            if p.attempt > 0:  # a takeover's restart: the execution's start was shown
                return []
            return [head.event("node_started", {
                **self._node_fields(p.node_id), "inputs": None,
                "extras": {}}, fact)]
        if isinstance(p, ev.WorkflowNodeSucceeded):
            node = self.graph.node(p.node_id)
            shown = [head.event("node_finished", {
                **self._node_fields(p.node_id), **node_finished_fields(
                    status=p.status, inputs=p.inputs, process_data=p.process_data,
                    outputs=self.outputs.get(p.node_id, p.outputs), error=None,
                    elapsed_time=p.elapsed_time, usage=p.usage, finished_at=at)}, fact)]
            if node.type == "answer" and head.mode == "advanced-chat":
                shown.append(head.event("message", None, fact) | {
                    "id": str(head.message_id),
                    "answer": str(self.outputs.get(p.node_id, {}).get("answer", "")),
                    "from_variable_selector": [p.node_id, "answer"]})
            return shown
        if isinstance(p, ev.WorkflowNodeFailed):
            node = self.graph.node(p.node_id)
            handled = node.data.get("error_strategy") in EXCEPTION_STRATEGIES
            outputs = pool.values.get(p.node_id) if pool is not None and handled else None
            return [head.event("node_finished", {
                **self._node_fields(p.node_id), **node_finished_fields(
                    status="exception" if handled else "failed", inputs=p.inputs,
                    process_data={}, outputs=outputs, error=p.error,
                    elapsed_time=p.elapsed_time, usage=None, finished_at=at)}, fact)]
        if isinstance(p, ev.WorkflowNodeRetried):
            return [head.event("node_retry", {
                **self._node_fields(p.node_id), "status": "retry", "error": p.error,
                "retry_index": p.attempt - 1, "inputs": None, "outputs": None,
                "process_data": None, "elapsed_time": 0.0, "finished_at": at,
                "execution_metadata": None, "files": []}, fact)]
        if isinstance(p, ev.WorkflowRunPaused):
            return [head.event("human_input_required", self.mask(required_event_data(
                p, str(node_execution_id(self.run_id, p.node_id)))), fact),
                head.event("workflow_paused", {
                    "workflow_run_id": str(self.run_id), "paused_nodes": [p.node_id],
                    "outputs": {}, "reasons": [{"type": "human_input_required",
                                                "node_id": p.node_id}],
                    "status": "paused", "created_at": head.created_at,
                    "elapsed_time": self._elapsed(), "total_tokens": self.total_tokens,
                    "total_steps": len(self.started)}, fact)]
        if isinstance(p, ev.WorkflowHumanInputSubmitted):
            asked = next(e.payload for e in self.history
                         if isinstance(e.payload, ev.WorkflowRunPaused)
                         and e.payload.form_token == p.form_token)
            return [head.event("human_input_form_filled",
                               self.mask(filled_event_data(asked, p)), fact)]
        if isinstance(p, ev.WorkflowHumanInputTimedOut):
            return [head.event("human_input_form_timeout", {
                "node_id": p.node_id, "node_title": self.graph.node(p.node_id).title,
                "expiration_time": int(self.paused.expires_at) if self.paused else 0}, fact)]
        if isinstance(p, ev.WorkflowRunSucceeded):
            exceptions = self._exceptions()
            # Dify's name for a run that some nodes failed in and went on past
            status = "partial-succeeded" if exceptions else "succeeded"
            return [head.workflow_finished(
                status=status, outputs=self.run_outputs or p.outputs, error=None,
                elapsed_time=p.elapsed_time, total_tokens=p.total_tokens,
                total_steps=p.total_steps, finished_at=at, fact=fact,
                exceptions_count=exceptions)]
        if isinstance(p, ev.WorkflowRunFailed):
            return [head.workflow_finished(
                status="failed", outputs=None, error=p.error, elapsed_time=p.elapsed_time,
                total_tokens=p.total_tokens, total_steps=p.total_steps, finished_at=at,
                fact=fact, exceptions_count=self._exceptions())]
        if isinstance(p, ev.WorkflowRunStopped):
            return [head.workflow_finished(
                status="stopped", outputs=None, error="Workflow execution stopped by user.",
                elapsed_time=p.elapsed_time, total_tokens=p.total_tokens,
                total_steps=p.total_steps, finished_at=at, fact=fact,
                exceptions_count=self._exceptions())]
        return []

    def _exceptions(self) -> int | None:
        """Nodes that failed and went on by their error strategy (Dify's exceptions_count);
        None for a run failed without reading its graph."""
        if not self.graph.nodes:
            return None
        return sum(1 for e in self.history if isinstance(e.payload, ev.WorkflowNodeFailed)
                   and self.graph.node(e.payload.node_id).data.get("error_strategy")
                   in EXCEPTION_STRATEGIES)

    def _node_fields(self, node_id: str) -> dict[str, Any]:
        started, node = self.started[node_id], self.graph.node(node_id)
        return node_fields(node_id=node_id, node_type=node.type, title=node.title,
                           execution_id=started.payload.execution_id,
                           index=started.payload.index,
                           predecessor=started.payload.predecessor_node_id,
                           created_at=int(started.occurred_at.timestamp()))


def _tokens_of(p: EventPayload) -> int:
    """The model tokens a node's result used."""
    if not isinstance(p, ev.WorkflowNodeSucceeded):
        return 0
    return int((p.usage or {}).get("total_tokens") or 0)


def _facts_of_live(p: EventPayload, outputs: Mapping[str, Mapping[str, Any]]) -> list[Fact]:
    if isinstance(p, ev.WorkflowNodeStarted):
        return [NodeStarted(p.node_id)]
    if isinstance(p, ev.WorkflowNodeSucceeded):
        return [NodeSucceeded(p.node_id, outputs[p.node_id], p.handle, p.updates)]
    if isinstance(p, ev.WorkflowNodeFailed):
        return [NodeFailed(p.node_id, p.error, p.error_type)]
    return []
