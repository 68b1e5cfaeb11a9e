"""Command handlers of human input: a paused run's form answered (Service API) or timed out
(the form timeout job). Each records the answer on the run; the engine, following the run's
events, records the node's result from it and goes on from there on whichever member."""

from __future__ import annotations

from typing import Any

from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from commands.workflow.aggregates import WorkflowRun
from schemas.workflow import commands as cmd


def submit_human_input(c: cmd.SubmitHumanInput, uow: UnitOfWork) -> dict[str, Any]:
    uow.get(WorkflowRun, c.run_id).submit_form(c.app_id, c.form_token, c.action, c.inputs,
                                               c.user, c.submitted_at, uow.ctx)
    return {"workflow_run_id": str(c.run_id)}


def time_out_human_input(c: cmd.TimeOutHumanInput, uow: UnitOfWork) -> dict[str, Any]:
    timed_out = uow.get(WorkflowRun, c.run_id).time_out_form(c.form_token, c.now, uow.ctx)
    return {"workflow_run_id": str(c.run_id), "timed_out": timed_out}


HANDLERS = command_handlers(submit_human_input, time_out_human_input)
