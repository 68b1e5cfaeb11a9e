"""The node executors by Dify node type: one module per node type (or family), one line each
here. A type missing here fails its node with a clear message (tool and agent nodes need
plugins Eddy does not have)."""

from __future__ import annotations

from workers.workflow.nodes import pure
from workers.workflow.nodes.base import Executor

EXECUTORS: dict[str, Executor] = {
    **pure.EXECUTORS,
}
