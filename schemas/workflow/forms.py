"""A human-input node's form, as Dify's Service API shows and accepts it (GET/POST
/v1/form/human_input/{form_token}): what the executor builds when the run pauses (recorded in
WorkflowRunPaused.form), what the form route shows, and how a submission is checked against
it. No I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import Field

from schemas.base import Body, EventPayload
from schemas.errors import (
    HumanInputFormExpired,
    HumanInputFormNotFound,
    HumanInputFormSubmitted,
    InvalidFormData,
)
from schemas.workflow import events as ev

TEXT_INPUTS = frozenset({"paragraph", "text_input"})  # text_input: Dify's older DSL name
FILE_INPUTS = frozenset({"file", "file-list"})
TIMEOUT_HANDLE = "timeout"  # the branch a form left unanswered past its expiry takes
# where a form's content shows an input's value once submitted (Dify's `{{#$outputs.x#}}`)
OUTPUT_PLACEHOLDER = re.compile(r"\{\{#\$outputs\.([a-zA-Z_][a-zA-Z0-9_]{0,29})#\}\}")


class FormSubmission(Body):
    """POST /v1/form/human_input/{form_token}'s body."""

    inputs: dict[str, Any]
    action: str = Field(min_length=1, max_length=100)
    user: str = Field(min_length=1, max_length=255)


@dataclass
class RunForms:
    """What a run's history says of its forms: the one waiting (if the run is paused), those
    answered (one-shot: "submitted" or "timeout"), and whether the run ended. Folded by the
    WorkflowRun aggregate, and by the form route from the same events."""

    app_id: UUID | None = None
    paused: ev.WorkflowRunPaused | None = None
    answered: dict[str, str] = field(default_factory=dict)
    ended: bool = False

    @classmethod
    def of(cls, history: Iterable[EventPayload]) -> RunForms:
        forms = cls()
        for payload in history:
            forms.note(payload)
        return forms

    def note(self, payload: EventPayload) -> None:
        if isinstance(payload, ev.WorkflowRunStarted):
            self.app_id = payload.app_id
        elif isinstance(payload, ev.WorkflowRunPaused):
            self.paused = payload
        elif isinstance(payload, ev.WorkflowHumanInputSubmitted):
            self.paused, self.answered[payload.form_token] = None, "submitted"
        elif isinstance(payload, ev.WorkflowHumanInputTimedOut):
            self.paused, self.answered[payload.form_token] = None, "timeout"
        elif isinstance(payload, ev.RUN_ENDS):
            self.paused, self.ended = None, True

    def waiting(self, token: str, app_id: UUID, now: float) -> ev.WorkflowRunPaused:
        """The form this token opens, still waiting for its answer; Dify's 4xx otherwise:
        unknown (or another app's) token, answered already, or past its expiry."""
        if self.app_id != app_id:
            raise HumanInputFormNotFound()
        if token in self.answered:
            raise (HumanInputFormSubmitted() if self.answered[token] == "submitted"
                   else HumanInputFormExpired())
        if self.paused is None or self.paused.form_token != token:
            raise HumanInputFormNotFound()
        if now >= self.paused.expires_at:
            raise HumanInputFormExpired()
        return self.paused

    def due(self, token: str, now: float) -> ev.WorkflowRunPaused | None:
        """The form this token opens if it is waiting past its expiry (to time out)."""
        paused = self.paused
        return paused if paused is not None and paused.form_token == token \
            and now >= paused.expires_at else None


def required_event_data(paused: ev.WorkflowRunPaused, form_id: str) -> dict[str, Any]:
    """`human_input_required`'s data (the stream's, and what a client shows the form by)."""
    form = paused.form
    return {"form_id": form_id, "node_id": paused.node_id,
            "node_title": form["node_title"], "form_content": form["form_content"],
            "inputs": form["inputs"], "actions": form["user_actions"], "display_in_ui": True,
            "form_token": paused.form_token,
            "resolved_default_values": form["resolved_default_values"],
            "expiration_time": int(paused.expires_at)}


def filled_event_data(paused: ev.WorkflowRunPaused,
                      answer: ev.WorkflowHumanInputSubmitted) -> dict[str, Any]:
    """`human_input_form_filled`'s data: the form's content with the answer's values in
    place of its `{{#$outputs.name#}}` placeholders, and the action chosen."""
    form = paused.form
    rendered = OUTPUT_PLACEHOLDER.sub(
        lambda m: str(answer.inputs.get(m.group(1), m.group(0))), form["form_content"])
    title = next((a["title"] for a in form["user_actions"] if a["id"] == answer.action),
                 answer.action)
    return {"node_id": paused.node_id, "node_title": form["node_title"],
            "rendered_content": rendered, "action_id": answer.action, "action_text": title,
            "submitted_data": answer.inputs}


def form_view(form: Mapping[str, Any], expires_at: float) -> dict[str, Any]:
    """GET /v1/form/human_input/{form_token}'s body."""
    return {"form_content": form["form_content"], "inputs": form["inputs"],
            "resolved_default_values": form["resolved_default_values"],
            "user_actions": form["user_actions"], "expiration_time": int(expires_at)}


def checked_submission(form: Mapping[str, Any], action: str,
                       inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The submitted values of the form's inputs (every input is to be filled; values the
    form does not ask for are dropped), or InvalidFormData naming what is wrong."""
    if action not in {a["id"] for a in form["user_actions"]}:
        raise InvalidFormData(f"Unknown action '{action}': the form's actions are "
                              f"{[a['id'] for a in form['user_actions']]}.")
    checked: dict[str, Any] = {}
    options: Mapping[str, list[str]] = form.get("options", {})
    for control in form["inputs"]:
        name, kind = control["output_variable_name"], control["type"]
        if name not in inputs or inputs[name] is None:
            raise InvalidFormData(f"Missing required input '{name}'.")
        value = inputs[name]
        if kind in TEXT_INPUTS and not isinstance(value, str):
            raise InvalidFormData(f"Input '{name}' must be a string.")
        if kind == "select" and value not in options.get(name, []):
            raise InvalidFormData(f"Input '{name}' must be one of {options.get(name, [])}.")
        if kind == "file" and not isinstance(value, Mapping):
            raise InvalidFormData(f"Input '{name}' must be a file mapping.")
        if kind == "file-list" and not (isinstance(value, list)
                                        and all(isinstance(f, Mapping) for f in value)):
            raise InvalidFormData(f"Input '{name}' must be a list of file mappings.")
        if kind == "file-list" and control.get("number_limits") \
                and len(value) > control["number_limits"]:
            raise InvalidFormData(f"Input '{name}' takes at most {control['number_limits']} "
                                  "files.")
        checked[name] = value
    return checked


def submitted_outputs(inputs: Mapping[str, Any], action: str) -> dict[str, Any]:
    """The node's outputs once its form is answered, as Dify's node gives them: the submitted
    values and the action chosen (also its branch handle)."""
    return {**inputs, "action_id": action, "__action_id": action}
