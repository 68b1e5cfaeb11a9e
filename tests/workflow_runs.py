"""Run histories of workflow apps, recorded straight to a node's event store through the
write side's WorkflowRun aggregate, as the engine records them: for the read side's tests,
which need runs of every shape without running a graph. Each history is recorded whole (the
run has ended by the time any processor sees its start, so nothing acts on it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun
from events.store import CommandOutcome
from schemas.conversation.naming import end_user_id_for
from schemas.platform import events as pev
from schemas.workflow import events as ev
from tests.harness import Node, eventually

VERSION = "2025-03-01 09:00:00.000000"


@dataclass(frozen=True)
class Step:
    """One node's execution: it succeeds with `outputs`, or fails with `error` (the run then
    fails), after a failed attempt per entry of `retries`."""

    node_id: str
    node_type: str = "code"
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retries: tuple[str, ...] = ()
    usage: dict[str, Any] | None = None


def owner(node: Node) -> tuple[UUID, UUID]:
    """(account, workspace) of the set-up owner, from the event store."""
    setup = next(e for e in node.container.store.read_from(0, 1000)
                 if isinstance(e.payload, pev.SetupCompleted))
    return setup.payload.account_id, setup.payload.workspace_id


def record_run(node: Node, app_id: str | UUID, *, user: str = "alice", debugging: bool = False,
               inputs: dict[str, Any] | None = None, steps: tuple[Step, ...] = (),
               stopped: bool = False, outputs: dict[str, Any] | None = None,
               conversation_id: UUID | None = None, outputs_ref: str | None = None) -> UUID:
    """A whole run of the app in the owner's workspace; a debugging run is the owner's; one
    in a conversation is an advanced-chat app's."""
    account, workspace = owner(node)
    app, run_id, command_id = UUID(str(app_id)), uuid4(), uuid4()
    ctx = Context(tenant_id=workspace, actor_id=account, correlation_id=command_id,
                  causation_id=command_id)
    uow = UnitOfWork(node.container.store, ctx)
    run = uow.get(WorkflowRun, run_id)
    run.start(ev.WorkflowRunStarted(
        app_id=app, workflow_id=uuid4(), task_id=uuid4(),
        mode="workflow" if conversation_id is None else "advanced-chat",
        conversation_id=conversation_id, message_id=conversation_id and uuid4(),
        triggered_from="debugging" if debugging else "app-run",
        user=str(account) if debugging else user,
        end_user_id=None if debugging else end_user_id_for(app, user),
        inputs=inputs if inputs is not None else {}, system={}, version=VERSION), ctx)
    failed, tokens, previous = None, 0, None
    for index, step in enumerate(steps, 1):
        execution = uuid4()
        run.note(ev.WorkflowNodeStarted(
            node_id=step.node_id, node_type=step.node_type, title=step.node_id.title(),
            execution_id=execution, index=index, predecessor_node_id=previous), ctx)
        for attempt, error in enumerate(step.retries, 1):
            run.note(ev.WorkflowNodeRetried(node_id=step.node_id, execution_id=execution,
                                            attempt=attempt, error=error), ctx)
        if step.error is not None:
            run.note(ev.WorkflowNodeFailed(node_id=step.node_id, execution_id=execution,
                                           error=step.error, elapsed_time=0.1), ctx)
            failed = f"Node {step.node_id.title()} run failed: {step.error}"
            break
        run.note(ev.WorkflowNodeSucceeded(node_id=step.node_id, execution_id=execution,
                                          outputs=step.outputs, elapsed_time=0.1,
                                          usage=step.usage), ctx)
        tokens += (step.usage or {}).get("total_tokens", 0)
        previous = step.node_id
    ended = {"elapsed_time": 0.1 * len(steps) + 0.05, "total_tokens": tokens,
             "total_steps": len(steps)}
    if stopped:
        run.note(ev.WorkflowRunStopped(**ended), ctx)
    elif failed is not None:
        run.note(ev.WorkflowRunFailed(error=failed, **ended), ctx)
    else:
        run.note(ev.WorkflowRunSucceeded(outputs=outputs or {}, outputs_ref=outputs_ref,
                                         **ended), ctx)
    node.container.store.append(uow.new_events(), CommandOutcome(
        command_id=command_id, status="accepted", aggregate_id=run_id, aggregate_version=None,
        position=None, result={}, error=None))
    return run_id


class Workflow:
    def __init__(self, node: Node, auth: dict[str, str], app_id: str,
                 key: dict[str, str]) -> None:
        self.node, self.auth, self.app_id, self.key = node, auth, app_id, key

    async def detail(self, run_id: Any, key: dict[str, str] | None = None) -> Any:
        return await self.node.client.get(f"/v1/workflows/run/{run_id}",
                                          headers=key or self.key)

    async def logs(self, **params: Any) -> Any:
        return await self.node.client.get("/v1/workflows/logs", headers=self.key,
                                          params=params)

    async def console(self, path: str, **params: Any) -> Any:
        return await self.node.client.get(f"/console/api/apps/{self.app_id}{path}",
                                          headers=self.auth, params=params)

    async def projected(self, run_id: Any) -> None:
        async def ended() -> bool:
            r = await self.detail(run_id)
            return r.status_code == 200 and r.json()["status"] != "running"
        await eventually(ended)
