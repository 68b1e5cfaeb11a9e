"""Webhook triggers (Dify's `/triggers/webhook/{webhook_id}`): a published workflow's
webhook node has a URL; a call that fits the node's rules (method, content type, required
and typed headers, query parameters and body fields) starts a run from that node through the
bus (StartWorkflowRun) and is answered at once with the node's response; one that does not
is refused with 400 and starts nothing. The console shows a node's URL and an app's triggers.

A webhook id is the trigger's id and a signature of it made with SECRET_KEY: only this
deployment makes ids that open a webhook (any other is Dify's 404), and nothing secret is
stored or recorded. Rotating SECRET_KEY changes every webhook's URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated, Any
from uuid import UUID, uuid4, uuid5

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Message

from gateway.auth import AppReader, ConsoleUser, Editor
from gateway.commanding import CommandPending
from gateway.deps import command_gateway, get_container, parse_id
from gateway.platform.console import console_app
from gateway.workflow.runs import IdempotencyKey
from projections.workflow import triggers as queries
from schemas.base import EDDY_NAMESPACE
from schemas.errors import (
    AppNotFound,
    WebhookNotFound,
    WebhookRequestInvalid,
    WebhookRequestTooLarge,
    WebhookTriggerNotFound,
)
from schemas.workflow import commands as cmd
from schemas.workflow.naming import trigger_id_for
from workflow_graph.triggers import (
    FORM_DATA,
    WebhookConfig,
    WebhookRequest,
    WebhookRequestError,
    webhook_inputs,
    webhook_response,
)

router = APIRouter()
console_router = APIRouter(prefix="/console/api")
WEBHOOK_PATH = "/triggers/webhook/"
_ID_CHARS = 22  # a UUID's 16 bytes in unpadded base64url
_SIGNATURE_CHARS = 24
# a webhook run's `user`: the end user the run is made for (Dify's trigger end user)
WEBHOOK_USER = "webhook"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signature(secret_key: str, trigger_id: UUID) -> str:
    digest = hmac.new(secret_key.encode(), f"workflow-webhook:{trigger_id}".encode(),
                      hashlib.sha256).digest()
    return _b64(digest)[:_SIGNATURE_CHARS]


def webhook_id_for(secret_key: str, trigger_id: UUID) -> str:
    return _b64(trigger_id.bytes) + _signature(secret_key, trigger_id)


def _trigger_id_of(secret_key: str, webhook_id: str) -> UUID | None:
    """The trigger a webhook id names, if its signature is ours."""
    if len(webhook_id) != _ID_CHARS + _SIGNATURE_CHARS:
        return None
    try:
        trigger_id = UUID(bytes=base64.urlsafe_b64decode(webhook_id[:_ID_CHARS] + "=="))
    except ValueError:
        return None
    expected = _signature(secret_key, trigger_id)
    return trigger_id if hmac.compare_digest(expected, webhook_id[_ID_CHARS:]) else None


@router.api_route(WEBHOOK_PATH + "{webhook_id}",
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
async def call_webhook(request: Request, webhook_id: str,
                       idempotency_key: IdempotencyKey = None) -> Response:
    c = get_container(request)
    trigger_id = _trigger_id_of(c.settings.SECRET_KEY, webhook_id)
    row = await queries.webhook(c.engine, trigger_id) if trigger_id else None
    if row is None:
        raise WebhookNotFound(f"Webhook not found: {webhook_id}")
    config = WebhookConfig.of(row["node_id"], row["config"])
    inputs = await _inputs(request, config)
    run_id, task_id = _run_ids(row["id"], idempotency_key)
    try:
        await command_gateway(request).send(
            cmd.StartWorkflowRun(run_id=run_id, app_id=row["app_id"], task_id=task_id,
                                 mode="workflow", triggered_from="webhook", user=WEBHOOK_USER,
                                 inputs=inputs, root_node_id=row["node_id"]),
            aggregate_id=run_id, tenant_id=row["tenant_id"], actor_id=None,
            idempotency_key=idempotency_key and f"webhook:{row['id']}:{idempotency_key}",
            read_your_writes=False)
    except CommandPending:
        pass  # published: the run starts whatever happens to this request
    body, status = webhook_response(config)
    return JSONResponse(body, status_code=status)


async def _inputs(request: Request, config: WebhookConfig) -> dict[str, Any]:
    limit = get_container(request).settings.WEBHOOK_REQUEST_BODY_MAX_SIZE
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    # a chunked body states no length: it is counted as it arrives and refused at the limit,
    # never read whole first
    capped = _capped(request, limit)
    content_type = request.headers.get("content-type", "")
    form: dict[str, str] | None = None
    raw = b""
    if content_type.split(";")[0].strip().lower() == FORM_DATA:
        # fields only: files would need tool files, which Eddy does not keep
        parsed = await capped.form(max_files=_MAX_FORM_PARTS, max_fields=_MAX_FORM_PARTS,
                                   max_part_size=limit)
        form = {k: v for k, v in parsed.items() if isinstance(v, str)}
    else:
        raw = await capped.body()
    try:
        return webhook_inputs(config, WebhookRequest(
            method=request.method, headers=dict(request.headers),
            query=dict(request.query_params), content_type=content_type, raw=raw, form=form))
    except WebhookRequestError as error:
        raise WebhookRequestInvalid(str(error)) from None


_MAX_FORM_PARTS = 100  # fields (and files) of a multipart webhook body


def _too_large(limit: int) -> WebhookRequestTooLarge:
    return WebhookRequestTooLarge(f"Webhook request too large: exceeds maximum allowed size "
                                  f"of {limit} bytes")


def _capped(request: Request, limit: int) -> Request:
    """The request whose body reads fail with WebhookRequestTooLarge once more than `limit`
    bytes have arrived."""
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return Request(request.scope, receive)


def _run_ids(trigger_id: UUID, idempotency_key: str | None) -> tuple[UUID, UUID]:
    """(run, task) ids: new ones, or with an Idempotency-Key the same for every retry of the
    call (so retries join the first one's run)."""
    if not idempotency_key:
        return uuid4(), uuid4()
    scope = uuid5(EDDY_NAMESPACE, f"webhook-idempotency:{trigger_id}:{idempotency_key}")
    return uuid5(scope, "run"), uuid5(scope, "task")


# --- console ----------------------------------------------------------------------------------


async def _workflow_app(request: Request, user: ConsoleUser, app_id: str) -> dict[str, Any]:
    app = await console_app(request, user, parse_id(app_id, AppNotFound))
    if app["mode"] != "workflow":  # only workflow apps have triggers (Dify's)
        raise AppNotFound("App mode is not in the supported list: ['workflow']")
    return app


def _url(request: Request, webhook_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}{WEBHOOK_PATH}{webhook_id}"


@console_router.get("/apps/{app_id}/workflows/triggers/webhook")
async def webhook_of_node(request: Request, app_id: str,
                          node_id: Annotated[str, Query(min_length=1)],
                          user: ConsoleUser = Editor) -> dict[str, Any]:
    """A published webhook node's URL (Dify's webhook trigger fields)."""
    c = get_container(request)
    app = await _workflow_app(request, user, app_id)
    row = await queries.webhook_of_node(c.engine, app["id"], node_id)
    if row is None:
        raise WebhookTriggerNotFound()
    webhook_id = webhook_id_for(c.settings.SECRET_KEY, row["id"])
    return {"id": str(row["id"]), "webhook_id": webhook_id,
            "webhook_url": _url(request, webhook_id), "webhook_debug_url": None,
            "node_id": row["node_id"], "triggered_by": "production",
            "created_at": row["created_at"].isoformat()}


@console_router.get("/apps/{app_id}/triggers")
async def app_triggers(request: Request, app_id: str,
                       user: ConsoleUser = AppReader) -> dict[str, Any]:
    """The published workflow's trigger nodes (Dify's app triggers, each enabled)."""
    c = get_container(request)
    app = await _workflow_app(request, user, app_id)
    rows = await queries.triggers_of_app(c.engine, app["id"])
    return {"data": [{"id": str(trigger_id_for(app["id"], r["node_id"])),
                      "trigger_type": r["trigger_type"], "title": r["title"],
                      "node_id": r["node_id"], "provider_name": "", "icon": "",
                      "status": "enabled", "created_at": r["created_at"].isoformat(),
                      "updated_at": r["created_at"].isoformat()} for r in rows]}

