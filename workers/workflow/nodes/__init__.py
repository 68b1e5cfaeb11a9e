"""The node executors by Dify node type: one module per node type (or family), one line each
here. A type missing here fails its node with a clear message (tool and agent nodes need
plugins Eddy does not have)."""

from __future__ import annotations

from workers.workflow.nodes import pure
from workers.workflow.nodes.base import Executor
from workers.workflow.nodes.container import run_body_start
from workers.workflow.nodes.iteration import run_iteration
from workers.workflow.nodes.loop import run_loop

EXECUTORS: dict[str, Executor] = {
    **pure.EXECUTORS,
    "iteration": run_iteration,
    "iteration-start": run_body_start,
    "loop": run_loop,
    "loop-start": run_body_start,
    "loop-end": run_body_start,
}
