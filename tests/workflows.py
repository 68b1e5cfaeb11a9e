"""Workflow apps for tests: graphs written as Dify's DSL writes them, published through the
console as its editor does (draft, then publish), or straight through the write side's
aggregates (the version and the app's published pointer), and their runs' server-sent
events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.secrets import seal
from commands.aggregate import Context
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import PublishedWorkflow, WorkflowVersion
from schemas.workflow import events as ev
from schemas.workflow.naming import environment_secret_purpose, published_workflow_id_for
from tests.harness import Node
from tests.spec import validate, workflow_event_schema
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import Executor, NodeCall, NodeResult


def graph_node(node_id: str, node_type: str, title: str = "", **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "custom", "position": {"x": 0, "y": 0},
            "data": {"type": node_type, "title": title or node_id, **data}}


def edge(source: str, target: str, handle: str = "source") -> dict[str, Any]:
    return {"id": f"{source}-{handle}-{target}", "source": source, "target": target,
            "sourceHandle": handle, "targetHandle": "target"}


def graph(nodes: Sequence[dict[str, Any]], edges: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"nodes": list(nodes), "edges": list(edges)}


def text_input(variable: str, required: bool = True, **more: Any) -> dict[str, Any]:
    return {"variable": variable, "label": variable, "type": "text-input",
            "required": required, **more}


def end_outputs(*pairs: tuple[str, list[str]]) -> list[dict[str, Any]]:
    return [{"variable": name, "value_selector": selector} for name, selector in pairs]


def tenant_of(node: Node, app_id: str) -> UUID:
    tenant = node.container.store.load(UUID(app_id))[0].tenant_id
    assert tenant is not None
    return tenant


def publish(node: Node, app_id: str, dsl_graph: dict[str, Any], *,
            environment: Sequence[dict[str, Any]] = (),
            secrets: dict[str, str] | None = None,
            conversation_variables: Sequence[dict[str, Any]] = ()) -> UUID:
    """A published version of the app with this graph (its id); `secrets`: secret
    environment variables, sealed as the console seals them; `conversation_variables`: an
    advanced-chat app's definitions."""
    tenant = tenant_of(node, app_id)
    sealed = [{"name": name, "value": seal(node.container.settings.SECRET_KEY,
                                           environment_secret_purpose(tenant), value),
               "value_type": "secret", "id": str(uuid4()), "description": ""}
              for name, value in (secrets or {}).items()]
    ctx = Context(tenant_id=tenant, actor_id=None, correlation_id=uuid4(),
                  causation_id=uuid4())
    uow = UnitOfWork(node.container.store, ctx)
    workflow_id = uuid4()
    uow.get(WorkflowVersion, workflow_id).create(ev.WorkflowVersionCreated(
        app_id=UUID(app_id), kind="workflow", version=str(time.time()), graph=dsl_graph,
        features={}, environment_variables=[*environment, *sealed],
        conversation_variables=list(conversation_variables), created_by=None), ctx)
    uow.get(PublishedWorkflow, published_workflow_id_for(UUID(app_id))).publish(
        ev.WorkflowPublished(app_id=UUID(app_id), workflow_id=workflow_id, published_by=None),
        ctx)
    uow.commit()
    return workflow_id


async def publish_in_console(node: Node, auth: dict[str, str], app_id: str,
                             dsl_graph: dict[str, Any], *,
                             environment: Sequence[dict[str, Any]] = (),
                             secrets: dict[str, str] | None = None,
                             conversation_variables: Sequence[dict[str, Any]] = ()) -> UUID:
    """Save `dsl_graph` as the app's draft and publish it through the console, as its
    editor does; the published version's id. `secrets`: secret environment variables;
    `conversation_variables`: an advanced-chat app's definitions."""
    base = f"/console/api/apps/{app_id}/workflows"
    draft = await node.client.get(f"{base}/draft", headers=auth)
    assert draft.status_code == 200, draft.text
    variables = [{"id": str(uuid4()), "description": "", **v} for v in environment] + [
        {"id": str(uuid4()), "name": name, "value": value, "value_type": "secret",
         "description": ""} for name, value in (secrets or {}).items()]
    saved = await node.client.post(f"{base}/draft", headers=auth, json={
        "graph": dsl_graph, "features": {}, "environment_variables": variables,
        "conversation_variables": list(conversation_variables), "hash": draft.json()["hash"]})
    assert saved.status_code == 200, saved.text
    published = await node.client.post(f"{base}/publish", headers=auth, json={})
    assert published.status_code == 200, published.text
    version = await node.client.get(f"{base}/publish", headers=auth)
    return UUID(version.json()["id"])


def check_workflow_events(events: Sequence[dict[str, Any]]) -> None:
    """Every event as Dify's spec has it, each naming its task and run."""
    for event in events:
        validate(workflow_event_schema(event["event"]), event)
        assert {"task_id", "workflow_run_id", "data"} <= event.keys(), event


# --- helpers: node executors the tests control (the real ones are other modules') -------


class Gate:
    """An executor that waits until released (or forever), counting its calls."""

    def __init__(self, outputs: dict[str, Any] | None = None) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[NodeCall] = []
        self.outputs = outputs or {"result": "done"}

    async def __call__(self, call: NodeCall) -> NodeResult:
        self.calls.append(call)
        self.entered.set()
        await self.release.wait()
        return NodeResult(outputs=self.outputs)


def through(node_type: str, **data: Any) -> dict[str, Any]:
    """start → `node_type` node `work` → end (outputs: work.result)."""
    return graph([graph_node("start", "start", variables=[]), graph_node("work", node_type, **data),
                  graph_node("end", "end", outputs=end_outputs(("result", ["work", "result"])))],
                 [edge("start", "work"), edge("work", "end")])


def executors_on(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Executor], None]:
    """Registers a test's executor for a node type in the engine's registry (the engine of
    a node in this process), for the test only."""
    def register(node_type: str, executor: Executor) -> None:
        monkeypatch.setitem(EXECUTORS, node_type, executor)
    return register
