"""Human-input forms (Service API): `GET /v1/form/human_input/{form_token}` shows a paused
run's form, `POST` answers it (the run resumes on whichever engine member picks it up). The
form lives in the run's events (WorkflowRunPaused), found through the run id its token
carries: read from the event store, so a form is there as soon as the run paused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.deps import command_gateway, get_container
from schemas.errors import HumanInputFormNotFound
from schemas.workflow.commands import SubmitHumanInput
from schemas.workflow.forms import FormSubmission, RunForms, form_view
from schemas.workflow.naming import run_id_of_form_token

router = APIRouter(prefix="/v1")


@router.get("/form/human_input/{form_token}")
async def get_form(request: Request, form_token: str,
                   key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    run_id = run_id_of_form_token(form_token)
    if run_id is None:
        raise HumanInputFormNotFound()
    assert key.app_id is not None
    history = await asyncio.to_thread(get_container(request).store.load, run_id)
    paused = RunForms.of(e.payload for e in history).waiting(form_token, key.app_id,
                                                             time.time())
    return form_view(paused.form, paused.expires_at)


@router.post("/form/human_input/{form_token}")
async def submit_form(request: Request, form_token: str, body: FormSubmission,
                      key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    run_id = run_id_of_form_token(form_token)
    if run_id is None:
        raise HumanInputFormNotFound()
    assert key.app_id is not None
    # The run decides (one-shot: of two submissions, the second is refused); the engine
    # follows the run's events, so nothing waits for a read model here.
    await command_gateway(request).send(
        SubmitHumanInput(run_id=run_id, app_id=key.app_id, form_token=form_token,
                         action=body.action, inputs=body.inputs, user=body.user,
                         submitted_at=time.time()),
        aggregate_id=run_id, tenant_id=key.tenant_id, actor_id=key.actor_id,
        read_your_writes=False)
    return {}
