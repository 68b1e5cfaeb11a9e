"""The human-input executor: the form it pauses on (Dify's node data: content rendered with
the run's variables, defaults and select options resolved, the older DSL's names read), its
timeout, the node's result once answered, and node data it refuses."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from schemas.workflow import events as we
from schemas.workflow.forms import filled_event_data, required_event_data
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import HumanInputRequired, NodeCall, NodeError, RunInfo
from workers.workflow.nodes.human_input import result_of_answer
from workflow_graph.graph import Graph, Node
from workflow_graph.variables import VariablePool

POOL = VariablePool.for_run(system={"user_id": "ann"}).with_outputs(
    "pick", {"sizes": ["S", "M", "L"], "draft": {"title": "Spring"}})


def call_of(data: dict[str, Any]) -> NodeCall:
    node = Node(id="review", type="human-input", title="Review", data=data)
    return NodeCall(node=node, graph=Graph(nodes=(node,), edges=()), pool=POOL,
                    run=RunInfo(run_id=uuid4(), task_id=uuid4(), app_id=uuid4(),
                                tenant_id=uuid4(), workflow_id=uuid4(), mode="workflow",
                                user="ann", end_user_id=None),
                    services=None, idempotency_key="k", emit=_emit, executors=EXECUTORS)


async def run(data: dict[str, Any]) -> HumanInputRequired:
    with pytest.raises(HumanInputRequired) as paused:
        await EXECUTORS["human-input"](call_of(data))
    return paused.value


async def _emit(kind: str, data: Any) -> None:
    raise AssertionError("nothing is streamed by the node itself")


async def test_the_form_is_built_from_the_node_and_the_runs_variables() -> None:
    paused = await run({
        "form_content": "Draft {{#pick.draft#}} by {{#sys.user_id#}}: {{#$outputs.why#}}",
        "inputs": [
            {"type": "text_input", "output_variable_name": "why",  # Dify's older names
             "placeholder": {"type": "constant", "value": "looks good"}},
            {"type": "select", "output_variable_name": "size",
             "option_source": {"type": "variable", "selector": ["pick", "sizes"]}},
            {"type": "paragraph", "output_variable_name": "who",
             "default": {"type": "variable", "selector": ["sys", "user_id"]}},
            {"type": "paragraph", "output_variable_name": "lost",
             "default": {"type": "variable", "selector": ["pick", "nothing"]}},
            {"type": "file-list", "output_variable_name": "files", "number_limits": 2}],
        "user_actions": [{"id": "approve", "title": "Approve", "button_style": "primary"}],
        "timeout": 2, "timeout_unit": "day"})
    form = paused.form
    assert paused.timeout_seconds == 2 * 86400
    assert form["form_content"] == ('Draft {"title": "Spring"} by ann: {{#$outputs.why#}}')
    assert [(i["type"], i["output_variable_name"]) for i in form["inputs"]] == [
        ("paragraph", "why"), ("select", "size"), ("paragraph", "who"), ("paragraph", "lost"),
        ("file-list", "files")]
    assert form["resolved_default_values"] == {"why": "looks good", "who": "ann"}
    assert form["options"] == {"size": ["S", "M", "L"]}
    assert form["user_actions"] == [{"id": "approve", "title": "Approve",
                                     "button_style": "primary"}]


async def test_dify_defaults_a_36_hour_timeout() -> None:
    assert (await run({"user_actions": [{"id": "ok", "title": "OK"}]})).timeout_seconds \
        == 36 * 3600


@pytest.mark.parametrize("data, message", [
    ({"timeout": 0}, "Invalid timeout 0 'hour'"),
    ({"timeout_unit": "week"}, "Invalid timeout 36 'week'"),
    ({"inputs": [{"type": "paragraph", "output_variable_name": "a"},
                 {"type": "paragraph", "output_variable_name": "a"}]},
     "Duplicated output_variable_name 'a'"),
    ({"inputs": [{"type": "checkbox", "output_variable_name": "a"}]},
     "Unknown form input type 'checkbox'"),
    ({"user_actions": [{"id": "1st", "title": "First"}]}, "Invalid user action"),
    ({"inputs": [{"type": "select", "output_variable_name": "s",
                  "option_source": {"type": "variable", "selector": ["pick", "draft"]}}]},
     "must come from an array[string] variable"),
])
async def test_node_data_it_cannot_build_a_form_from_fails_the_node(
        data: dict[str, Any], message: str) -> None:
    with pytest.raises(NodeError) as failed:
        await EXECUTORS["human-input"](call_of(data))
    assert message in failed.value.message
    assert failed.value.error_type == "HumanInputNodeError"


def test_an_answer_is_the_nodes_result_and_its_action_the_branch() -> None:
    submitted = result_of_answer(we.WorkflowHumanInputSubmitted(
        node_id="review", form_token="t", action="approve", inputs={"why": "fine"},
        submitted_by="bob"))
    assert (submitted.handle, dict(submitted.outputs)) == (
        "approve", {"why": "fine", "action_id": "approve", "__action_id": "approve"})
    timed_out = result_of_answer(we.WorkflowHumanInputTimedOut(node_id="review",
                                                               form_token="t"))
    assert timed_out.handle == "timeout"


async def test_the_stream_shows_the_form_and_then_how_it_was_filled() -> None:
    form = (await run({"form_content": "Why? {{#$outputs.why#}} ({{#$outputs.gone#}})",
                       "inputs": [{"type": "paragraph", "output_variable_name": "why"}],
                       "user_actions": [{"id": "ok", "title": "Sounds good"}]})).form
    paused = we.WorkflowRunPaused(node_id="review", form_token="a" * 64, form=dict(form),
                                  expires_at=1_800_000_000.5)
    required = required_event_data(paused, "form-1")
    assert (required["node_title"], required["form_token"], required["expiration_time"]) == (
        "Review", "a" * 64, 1_800_000_000)
    assert required["actions"] == [{"id": "ok", "title": "Sounds good",
                                    "button_style": "default"}]
    filled = filled_event_data(paused, we.WorkflowHumanInputSubmitted(
        node_id="review", form_token="a" * 64, action="ok", inputs={"why": "because"},
        submitted_by="bob"))
    assert (filled["rendered_content"], filled["action_text"], filled["submitted_data"]) == (
        "Why? because ({{#$outputs.gone#}})", "Sounds good", {"why": "because"})
