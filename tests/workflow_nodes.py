"""Calling a node executor the way the engine does: a NodeCall on a variable pool, with the
few services the IO executors use (settings, storage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from adapters.storage.local import LocalStorage
from config import Settings
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import NodeCall, NodeResult, RunInfo
from workflow_graph.graph import Graph, Node
from workflow_graph.variables import VariablePool

TENANT = UUID("00000000-0000-4000-8000-00000000000a")


@dataclass(frozen=True)
class Services:
    """The members of the engine's services the IO executors use."""

    settings: Settings
    storage: LocalStorage


def services(tmp_path: Path, **settings: Any) -> Services:
    return Services(Settings(**settings), LocalStorage(tmp_path / "storage", fsync=False))


async def _streamed_nowhere(kind: str, data: Mapping[str, Any]) -> None:
    """The IO executors stream nothing; the engine's emit is not theirs to test."""


async def execute(node_type: str, data: Mapping[str, Any], pool: VariablePool,
                  svc: Services, *, node_id: str = "n1", extra_nodes: tuple[Node, ...] = (),
                  idempotency_key: str = "run-1-n1", attempt: int = 0) -> NodeResult:
    node = Node(node_id, node_type, str(data.get("title", node_id)), data)
    run = RunInfo(run_id=uuid4(), task_id=uuid4(), app_id=uuid4(), tenant_id=TENANT,
                  workflow_id=uuid4(), mode="advanced-chat", user="u1", end_user_id=None)
    call = NodeCall(node=node, graph=Graph((node, *extra_nodes), ()), pool=pool, run=run,
                    services=svc, idempotency_key=idempotency_key, emit=_streamed_nowhere,
                    executors=EXECUTORS, attempt=attempt)
    return await EXECUTORS[node_type](call)
