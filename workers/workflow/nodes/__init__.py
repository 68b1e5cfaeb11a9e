"""The node executors by Dify node type: one module per node type (or family), one line each
here. A type missing here fails its node with a clear message (tool and agent nodes need
plugins Eddy does not have)."""

from __future__ import annotations

from workers.workflow.nodes import (
    knowledge_retrieval,
    llm,
    parameter_extractor,
    pure,
    question_classifier,
)
from workers.workflow.nodes.base import Executor

EXECUTORS: dict[str, Executor] = {
    **pure.EXECUTORS,
    "llm": llm.run,
    "question-classifier": question_classifier.run,
    "parameter-extractor": parameter_extractor.run,
    "knowledge-retrieval": knowledge_retrieval.run,
}
