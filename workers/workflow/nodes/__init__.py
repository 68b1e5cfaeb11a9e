"""The node executors by Dify node type: one module per node type (or family), one line each
here. A type missing here fails its node with a clear message (tool and agent nodes need
plugins Eddy does not have)."""

from __future__ import annotations

from workers.workflow.nodes import (
    document_extractor,
    http_request,
    knowledge_retrieval,
    list_operator,
    llm,
    parameter_extractor,
    pure,
    question_classifier,
    triggers,
    variable_aggregator,
    variable_assigner,
)
from workers.workflow.nodes.base import Executor
from workers.workflow.nodes.code import execute_code
from workers.workflow.nodes.container import run_body_start
from workers.workflow.nodes.human_input import human_input
from workers.workflow.nodes.iteration import run_iteration
from workers.workflow.nodes.loop import run_loop
from workers.workflow.nodes.template_transform import execute_template_transform

EXECUTORS: dict[str, Executor] = {
    **pure.EXECUTORS,
    **triggers.EXECUTORS,
    "code": execute_code,
    "template-transform": execute_template_transform,
    "iteration": run_iteration,
    "iteration-start": run_body_start,
    "loop": run_loop,
    "loop-start": run_body_start,
    "loop-end": run_body_start,
    "http-request": http_request.run,
    "document-extractor": document_extractor.run,
    "list-operator": list_operator.run,
    "variable-aggregator": variable_aggregator.run,
    "variable-assigner": variable_aggregator.run,  # the aggregator's name in older DSLs
    "assigner": variable_assigner.run,
    "llm": llm.run,
    "question-classifier": question_classifier.run,
    "parameter-extractor": parameter_extractor.run,
    "knowledge-retrieval": knowledge_retrieval.run,
    "human-input": human_input,
}
