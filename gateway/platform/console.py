"""Console API (Dify's /console/api paths): setup, login, apps, API keys."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Header, Query, Request, Response

from adapters.secrets import Keyring
from gateway import auth
from gateway.auth import AdminOrOwner, AppReader, ConsoleUser, CurrentUser, Editor
from gateway.deps import command_gateway, get_container, parse_id
from gateway.params import Page
from gateway.platform.views import api_key_view, app_view
from projections.keyring import workspace_keyring
from projections.platform import queries
from schemas.errors import AlreadySetup, ApiKeyNotFound, AppNotFound, EddyError, NotFound
from schemas.platform import api
from schemas.platform import commands as cmd
from schemas.platform.naming import SETUP_ID, account_id_for

router = APIRouter(prefix="/console/api")
APP_MODE_FILTER = "^(completion|chat|advanced-chat|workflow|agent-chat|all)$"
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


# --- setup and authentication -------------------------------------------------------------


@router.get("/setup")
async def setup_status(request: Request) -> dict[str, Any]:
    info = await queries.setup_info(get_container(request).engine)
    if info is None:
        return {"step": "not_started", "setup_at": None}
    return {"step": "finished", "setup_at": info["setup_at"].isoformat()}


@router.post("/setup", status_code=201)
async def setup(request: Request, body: api.SetupRequest,
                idempotency_key: IdempotencyKey = None) -> dict[str, str]:
    if await queries.setup_info(get_container(request).engine) is not None:
        raise AlreadySetup()
    engine = get_container(request).engine
    account_id = account_id_for(body.email)
    credentials_id = await auth.store_credentials(engine, account_id, body.password)
    try:
        await command_gateway(request).send(
            cmd.SetupPlatform(account_id=account_id, workspace_id=uuid4(), email=body.email,
                              name=body.name, credentials_id=credentials_id,
                              interface_language=body.language),
            aggregate_id=SETUP_ID, tenant_id=None, actor_id=None,
            idempotency_key=idempotency_key,
        )
    except EddyError:
        await auth.discard_credentials(engine, credentials_id)
        raise
    return {"result": "success"}


@router.post("/login")
async def login(request: Request, body: api.LoginRequest) -> dict[str, Any]:
    tokens = await auth.login(request, body.email, body.password)
    return {"result": "success", "data": tokens}


@router.post("/refresh-token")
async def refresh_token(request: Request, body: api.RefreshTokenRequest) -> dict[str, Any]:
    tokens = await auth.Tokens(request).refresh(body.refresh_token)
    return {"result": "success", "data": tokens}


# --- apps -----------------------------------------------------------------------------------


@router.get("/apps")
async def list_apps(
    request: Request,
    user: ConsoleUser = AppReader,
    page: Page = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    mode: Annotated[str, Query(pattern=APP_MODE_FILTER)] = "all",
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> dict[str, Any]:
    result = await queries.list_apps(get_container(request).engine, user.tenant_id, page=page,
                                     limit=limit, mode=None if mode == "all" else mode, name=name)
    return {
        "page": page, "limit": limit, "total": result.total,
        "has_more": page * limit < result.total,
        "data": [app_view(row) for row in result.items],
    }


async def console_app(request: Request, user: ConsoleUser, app_id: UUID) -> dict[str, Any]:
    row = await queries.app_in_workspace(get_container(request).engine, user.tenant_id, app_id)
    if row is None:
        raise AppNotFound()
    return row


@router.post("/apps", status_code=201)
async def create_app(request: Request, body: api.CreateAppRequest,
                     user: ConsoleUser = Editor,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    app_id = uuid4()
    accepted = await command_gateway(request).send(
        cmd.CreateApp(app_id=app_id, **body.model_dump()),
        aggregate_id=app_id, tenant_id=user.tenant_id, actor_id=user.account_id,
        idempotency_key=idempotency_key, creates=True,
    )
    # A retried Idempotency-Key answers with the app the first request created.
    return app_view(await console_app(request, user, UUID(str(accepted.result["app_id"]))))


@router.get("/apps/{app_id}")
async def get_app(request: Request, app_id: str, user: ConsoleUser = AppReader) -> dict[str, Any]:
    return app_view(await console_app(request, user, parse_id(app_id, AppNotFound)))


@router.put("/apps/{app_id}")
async def update_app(request: Request, app_id: str, body: api.UpdateAppRequest,
                     user: ConsoleUser = Editor,
                     idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    target = parse_id(app_id, AppNotFound)
    await console_app(request, user, target)
    await command_gateway(request).send(
        cmd.UpdateApp(app_id=target, **body.model_dump()),
        aggregate_id=target, tenant_id=user.tenant_id, actor_id=user.account_id,
        idempotency_key=idempotency_key,
    )
    return app_view(await console_app(request, user, target))


@router.delete("/apps/{app_id}", status_code=204)
async def delete_app(request: Request, app_id: str, user: ConsoleUser = Editor,
                     idempotency_key: IdempotencyKey = None) -> Response:
    target = parse_id(app_id, AppNotFound)
    await console_app(request, user, target)
    await command_gateway(request).send(
        cmd.DeleteApp(app_id=target), aggregate_id=target, tenant_id=user.tenant_id,
        actor_id=user.account_id, idempotency_key=idempotency_key,
    )
    return Response(status_code=204)


# --- API keys (apps: "app-…", workspace knowledge: "dataset-…") ------------------------------


async def _keyring(request: Request, user: ConsoleUser) -> Keyring:
    c = get_container(request)
    return await workspace_keyring(c.engine, c.settings.SECRET_KEY, user.tenant_id)


def _token_of(keyring: Keyring, row: dict[str, Any]) -> str:
    return auth.reveal_api_token(keyring, row["token_ciphertext"], row["token_hint"])


async def _list_keys(request: Request, user: ConsoleUser, key_type: str,
                     app_id: UUID | None) -> dict[str, Any]:
    c = get_container(request)
    rows = await queries.list_api_keys(c.engine, user.tenant_id, key_type, app_id)
    used = await c.kv.get_fields(auth.API_KEY_LAST_USED, [str(r["id"]) for r in rows])
    keyring = await _keyring(request, user)
    return {"data": [api_key_view(r, _token_of(keyring, r), int(u) if u else None)
                     for r, u in zip(rows, used, strict=True)]}


async def _create_key(request: Request, user: ConsoleUser, key_type: str, app_id: UUID | None,
                      idempotency_key: str | None) -> dict[str, Any]:
    c = get_container(request)
    # The token is made here and answered here; the command (on a topic) carries it sealed.
    key_id, token = uuid4(), auth.new_api_token(key_type)
    accepted = await command_gateway(request).send(
        cmd.CreateApiKey(key_id=key_id, key_type=key_type, app_id=app_id,  # type: ignore[arg-type]
                         token=auth.seal_api_token(await _keyring(request, user), token)),
        aggregate_id=key_id, tenant_id=user.tenant_id, actor_id=user.account_id,
        idempotency_key=idempotency_key, creates=True,
    )
    created_id = UUID(str(accepted.result["key_id"]))
    rows = await queries.list_api_keys(c.engine, user.tenant_id, key_type, app_id)
    row = next(r for r in rows if r["id"] == created_id)
    # A retried Idempotency-Key answers the key the first request made, not this new token.
    return api_key_view(row, token if created_id == key_id else _token_of(
        await _keyring(request, user), row), None)


async def _revoke_key(request: Request, user: ConsoleUser, key_type: str, app_id: UUID | None,
                      key_id: str) -> Response:
    target = parse_id(key_id, ApiKeyNotFound)
    await command_gateway(request).send(
        cmd.RevokeApiKey(key_id=target, key_type=key_type, app_id=app_id),  # type: ignore[arg-type]
        aggregate_id=target, tenant_id=user.tenant_id, actor_id=user.account_id,
    )
    return Response(status_code=204)


@router.get("/apps/{app_id}/api-keys")
async def list_app_keys(request: Request, app_id: str,
                        user: ConsoleUser = AppReader) -> dict[str, Any]:
    target = parse_id(app_id, AppNotFound)
    await console_app(request, user, target)
    return await _list_keys(request, user, "app", target)


@router.post("/apps/{app_id}/api-keys", status_code=201)
async def create_app_key(request: Request, app_id: str, user: ConsoleUser = Editor,
                         idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    target = parse_id(app_id, AppNotFound)
    await console_app(request, user, target)
    return await _create_key(request, user, "app", target, idempotency_key)


@router.delete("/apps/{app_id}/api-keys/{key_id}", status_code=204)
async def delete_app_key(request: Request, app_id: str, key_id: str,
                         user: ConsoleUser = AdminOrOwner) -> Response:
    return await _revoke_key(request, user, "app", parse_id(app_id, AppNotFound), key_id)


@router.get("/datasets/api-keys")
async def list_dataset_keys(request: Request, user: ConsoleUser = AdminOrOwner) -> dict[str, Any]:
    return await _list_keys(request, user, "dataset", None)


@router.post("/datasets/api-keys", status_code=201)
async def create_dataset_key(request: Request, user: ConsoleUser = AdminOrOwner,
                             idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    return await _create_key(request, user, "dataset", None, idempotency_key)


@router.delete("/datasets/api-keys/{key_id}", status_code=204)
async def delete_dataset_key(request: Request, key_id: str,
                             user: ConsoleUser = AdminOrOwner) -> Response:
    return await _revoke_key(request, user, "dataset", None, key_id)


# --- command status (the 202 answer's status_url) --------------------------------------------


@router.get("/commands/{command_id}")
async def command_status(request: Request, command_id: str,
                         user: ConsoleUser = CurrentUser) -> dict[str, Any]:
    return await command_gateway(request).status(parse_id(command_id, NotFound),
                                                 user.tenant_id)

