"""Running one code or template-transform node as the engine would: a NodeCall on a
variable pool, with the services the executor uses (the settings and the real sandbox)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.sandbox.base import CodeSandbox
from config import Settings
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import NodeCall, NodeResult, RunInfo
from workflow_graph.graph import parse_graph
from workflow_graph.variables import VariablePool


@dataclass(frozen=True)
class SandboxServices:
    settings: Settings
    sandbox: CodeSandbox


async def _ignore(kind: str, data: Mapping[str, Any]) -> None:
    return None


async def run_node(services: SandboxServices, node_type: str, data: Mapping[str, Any],
                   pool: VariablePool) -> NodeResult:
    graph = parse_graph({"nodes": [{"id": "n1", "data": {"type": node_type, "title": "n1",
                                                          **data}}], "edges": []})
    run = RunInfo(run_id=uuid.uuid4(), task_id=uuid.uuid4(), app_id=uuid.uuid4(),
                  tenant_id=uuid.uuid4(), workflow_id=uuid.uuid4(), mode="workflow",
                  user="tester", end_user_id=None)
    call = NodeCall(node=graph.node("n1"), graph=graph, pool=pool, run=run,
                    services=services, idempotency_key="test", emit=_ignore,
                    executors=EXECUTORS)
    return await EXECUTORS[node_type](call)
