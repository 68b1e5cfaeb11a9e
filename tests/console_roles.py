"""The console's roles, route by route: which routes are public, the role dependency each
other route takes (gateway.auth), and the permission table (every console route with the roles
it serves, and a request that exercises it) with the world it is tried in: the owner's
workspace with something behind every route, and a member of every role.
tests/unit/test_console_roles.py checks the routes against it; tests/e2e/test_console_roles.py
tries every row with every role over HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from sqlalchemy import literal_column, select

from gateway.auth import SERVED_ROLES
from projections.layout import read_tables
from schemas.platform.naming import account_id_for
from schemas.platform.roles import (
    ADMINS,
    APP_READERS,
    DATASET_EDITORS,
    EDITORS,
    EVERYONE,
    OWNERS,
    ROLES,
)
from tests.chat import MODEL, connect_provider
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node, eventually

CONSOLE = "/console/api"
PASSWORD = "passw0rd1"
FORBIDDEN = {"code": "forbidden", "status": 403,
             "message": "You don't have the permission to access the requested resource. It "
                        "is either read-protected or not readable by the server."}
NOT_OWNER = {"code": "not_owner", "status": 400,
             "message": "You are not the owner of the workspace."}

# Routes anyone may call: they open a session or set up the installation.
PUBLIC = {
    ("GET", f"{CONSOLE}/setup"),
    ("POST", f"{CONSOLE}/setup"),
    ("POST", f"{CONSOLE}/login"),
    ("POST", f"{CONSOLE}/refresh-token"),
    ("GET", f"{CONSOLE}/activate/check"),  # an invitee has no session yet
    ("POST", f"{CONSOLE}/activate"),
    ("POST", f"{CONSOLE}/forgot-password"),  # nor has whoever forgot their password
    ("POST", f"{CONSOLE}/forgot-password/validity"),
    ("POST", f"{CONSOLE}/forgot-password/resets"),
    ("POST", f"{CONSOLE}/email-code-login"),
    ("POST", f"{CONSOLE}/email-code-login/validity"),
}


def console_routes(app: FastAPI) -> dict[tuple[str, str], Dependant]:
    """Every console (method, path) of the assembled app, with what its endpoint depends on
    (as included: routers' own dependencies count)."""
    return {(method, route.path): route.dependant for route in iter_route_contexts(app.routes)
            if (route.path or "").startswith(CONSOLE) for method in route.methods or ()}


def role_dependencies(dependant: Dependant) -> list[Callable[..., Any]]:
    """The role dependencies a route takes, at any depth of its dependency tree."""
    found = [d.call for d in dependant.dependencies
             if d.call is not None and d.call in SERVED_ROLES]
    for sub in dependant.dependencies:
        found += role_dependencies(sub)
    return found


def served_roles(dependant: Dependant) -> frozenset[str]:
    """The roles of a route's one role dependency."""
    (dependency,) = role_dependencies(dependant)
    return SERVED_ROLES[dependency]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # the route's path, {name} filled from the world's ids
    allowed: frozenset[str]
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # path name -> which world id
    # Roles the route itself turns away once its role dependency let them in, and its answer
    # (Dify's owner transfer answers anyone but the owner 400 not_owner, not 403).
    turned_away: frozenset[str] = frozenset()
    turned_away_with: dict[str, Any] | None = None


PROVIDERS = f"{CONSOLE}/workspaces/current/model-providers"
MEMBERS = f"{CONSOLE}/workspaces/current/members"
COMPATIBLE = {"provider": "compatible"}
WORKFLOW = {"app_id": "workflow_app"}
CUSTOM_MODEL = {"model": MODEL, "model_type": "llm"}
DRAFT = {"graph": {"nodes": [{"id": "start", "type": "custom", "data": {
    "type": "start", "title": "Start", "variables": []}}], "edges": []}, "features": {}}

TABLE = [
    # Apps: members see them, editors build them (Dify's `is_editor` checks); a dataset
    # operator reaches only knowledge.
    Row("GET", f"{CONSOLE}/apps", APP_READERS),
    Row("POST", f"{CONSOLE}/apps", EDITORS, json={"name": "New bot", "mode": "chat"}),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}", APP_READERS),
    Row("PUT", f"{CONSOLE}/apps/{{app_id}}", EDITORS, json={"name": "Renamed bot"}),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/api-keys", APP_READERS),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/api-keys", EDITORS),
    Row("DELETE", f"{CONSOLE}/apps/{{app_id}}/api-keys/{{key_id}}", ADMINS,
        ids={"key_id": "app_key"}),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/model-config", APP_READERS),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/model-config", EDITORS, json={
        "model": {"provider": "openai_api_compatible", "name": MODEL, "mode": "chat",
                  "completion_params": {}}, "pre_prompt": "Be brief."}),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/site", APP_READERS),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/site", EDITORS, json={"title": "City guide"}),
    Row("DELETE", f"{CONSOLE}/apps/{{app_id}}", EDITORS, ids={"app_id": "doomed_app"}),
    # Workflows: the editor's pages are editors' (Dify's edit_permission_required); the run
    # history and logs are every app reader's.
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflows/draft", EDITORS, ids=WORKFLOW),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/workflows/draft", EDITORS, json=DRAFT,
        ids=WORKFLOW),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/workflows/publish", EDITORS, json={},
        ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflows/publish", EDITORS, ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflows", EDITORS, ids=WORKFLOW),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/workflows/draft/run", EDITORS,
        json={"inputs": {}}, ids=WORKFLOW),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/workflows/draft/nodes/{{node_id}}/run", EDITORS,
        json={"inputs": {}}, ids=WORKFLOW),
    Row("POST", f"{CONSOLE}/apps/{{app_id}}/workflow-runs/tasks/{{task_id}}/stop", EDITORS,
        ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflow-runs", APP_READERS, ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/advanced-chat/workflow-runs", APP_READERS,
        ids={"app_id": "chatflow_app"}),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflow-runs/count", APP_READERS, ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflow-runs/{{run_id}}", APP_READERS,
        ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflow-runs/{{run_id}}/node-executions",
        APP_READERS, ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflow-app-logs", APP_READERS, ids=WORKFLOW),
    # Triggers: a webhook's URL (it carries the secret) is the editors'; the list is every
    # app reader's, as Dify's.
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflows/triggers/webhook", EDITORS, ids=WORKFLOW,
        params={"node_id": "start"}),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/triggers", APP_READERS, ids=WORKFLOW),
    Row("POST", f"{CONSOLE}/apps/imports", EDITORS,
        json={"mode": "yaml-content", "yaml_content": "app: {}"}),
    Row("POST", f"{CONSOLE}/apps/imports/{{import_id}}/confirm", EDITORS),
    Row("GET", f"{CONSOLE}/apps/imports/{{app_id}}/check-dependencies", EDITORS,
        ids=WORKFLOW),
    Row("GET", f"{CONSOLE}/apps/{{app_id}}/export", EDITORS, ids=WORKFLOW),
    # Monitoring: every app reader's (Dify's statistics routes check no role).
    *[Row("GET", f"{CONSOLE}/apps/{{app_id}}/statistics/{figure}", APP_READERS,
          params={"start": "2026-01-01 00:00", "end": "2026-01-31 23:59"},
          ids={"app_id": "completion_app"} if figure == "average-response-time" else {})
      for figure in ("daily-messages", "daily-conversations", "daily-end-users", "token-costs",
                     "average-session-interactions", "user-satisfaction-rate",
                     "average-response-time", "tokens-per-second")],
    *[Row("GET", f"{CONSOLE}/apps/{{app_id}}/workflow/statistics/{figure}", APP_READERS,
          ids=WORKFLOW)
      for figure in ("daily-conversations", "daily-terminals", "token-costs",
                     "average-app-interactions")],
    # Knowledge: dataset editors, the dataset operator among them; its Service API keys are
    # the admins' (Dify's is_admin_or_owner_required).
    Row("PATCH", f"{CONSOLE}/datasets/{{dataset_id}}/documents/{{document_id}}/processing/"
        "{action}", DATASET_EDITORS),
    Row("POST", f"{CONSOLE}/datasets/{{dataset_id}}/retry", DATASET_EDITORS,
        json={"document_ids": [str(uuid4())]}),
    Row("POST", f"{CONSOLE}/datasets/{{dataset_id}}/retry-failed", DATASET_EDITORS),
    Row("POST", f"{CONSOLE}/datasets/{{dataset_id}}/documents/{{document_id}}/reindex",
        DATASET_EDITORS),
    Row("GET", f"{CONSOLE}/datasets/api-keys", ADMINS),
    Row("POST", f"{CONSOLE}/datasets/api-keys", ADMINS),
    Row("DELETE", f"{CONSOLE}/datasets/api-keys/{{key_id}}", ADMINS,
        ids={"key_id": "dataset_key"}),
    # Model providers: every member reads them (building apps and knowledge picks models);
    # only admins change them (Dify's is_admin_or_owner_required).
    Row("GET", PROVIDERS, EVERYONE),
    Row("GET", f"{PROVIDERS}/{{provider:path}}/credentials", EVERYONE),
    Row("POST", f"{PROVIDERS}/{{provider:path}}/credentials", ADMINS,
        json={"credentials": {"openai_api_key": "sk-unchecked",
                              # a closed loopback port: validation fails without leaving
                              "openai_api_base": "http://127.0.0.1:1/v1"}}),
    Row("DELETE", f"{PROVIDERS}/{{provider:path}}/credentials", ADMINS),
    Row("GET", f"{PROVIDERS}/{{provider:path}}/models", EVERYONE, ids=COMPATIBLE),
    Row("POST", f"{PROVIDERS}/{{provider:path}}/models", ADMINS, ids=COMPATIBLE,
        json={**CUSTOM_MODEL, "model": "other-model", "credentials": {}}),
    Row("DELETE", f"{PROVIDERS}/{{provider:path}}/models", ADMINS, ids=COMPATIBLE,
        json={**CUSTOM_MODEL, "model": "other-model"}),
    Row("GET", f"{PROVIDERS}/{{provider:path}}/models/credentials", EVERYONE,
        ids=COMPATIBLE, params=CUSTOM_MODEL),
    Row("GET", f"{CONSOLE}/workspaces/current/models/model-types/{{model_type}}", EVERYONE),
    Row("GET", f"{CONSOLE}/workspaces/current/default-model", EVERYONE,
        params={"model_type": "llm"}),
    Row("POST", f"{CONSOLE}/workspaces/current/default-model", ADMINS, json={
        "model_settings": [{"model_type": "llm", "provider": "openai_api_compatible",
                            "model": MODEL}]}),
    # The workspaces and their members: every member sees them and switches; admins invite,
    # only the owner changes roles and removes (Dify's TenantService.check_member_permission).
    Row("GET", f"{CONSOLE}/workspaces", EVERYONE),
    Row("GET", f"{CONSOLE}/workspaces/current", EVERYONE),
    Row("POST", f"{CONSOLE}/workspaces/current", EVERYONE),
    Row("POST", f"{CONSOLE}/workspaces/switch", EVERYONE, json={"tenant_id": "{workspace}"}),
    Row("GET", MEMBERS, EVERYONE),
    Row("GET", f"{CONSOLE}/workspaces/current/dataset-operators", EVERYONE),
    Row("POST", f"{MEMBERS}/invite-email", ADMINS,
        json={"emails": ["invitee@example.com"], "role": "editor"}),
    Row("PUT", f"{MEMBERS}/{{member_id}}/update-role", OWNERS,
        json={"role": "editor"}, ids={"member_id": "bystander"}),
    Row("DELETE", f"{MEMBERS}/{{member_id}}", OWNERS,
        ids={"member_id": "leaver"}),
    # Ownership moves only by the owner's hand (a code mailed to it first).
    Row("POST", f"{MEMBERS}/send-owner-transfer-confirm-email", EVERYONE, json={},
        turned_away=EVERYONE - OWNERS, turned_away_with=NOT_OWNER),
    Row("POST", f"{MEMBERS}/owner-transfer-check", EVERYONE,
        json={"code": "000000", "token": "not-a-token"},
        turned_away=EVERYONE - OWNERS, turned_away_with=NOT_OWNER),
    Row("POST", f"{MEMBERS}/{{member_id}}/owner-transfer", EVERYONE,
        json={"token": "not-a-token"}, ids={"member_id": "bystander"},
        turned_away=EVERYONE - OWNERS, turned_away_with=NOT_OWNER),
    # A command's outcome: whoever sent it, whatever the role.
    Row("GET", f"{CONSOLE}/commands/{{command_id}}", EVERYONE),
    # One's own account, whatever the role; logging out last (it ends each role's session).
    Row("GET", f"{CONSOLE}/account/profile", EVERYONE),
    Row("POST", f"{CONSOLE}/account/password", EVERYONE, json={
        "password": PASSWORD, "new_password": PASSWORD, "repeat_new_password": PASSWORD}),
    Row("POST", f"{CONSOLE}/logout", EVERYONE),
]


@dataclass
class World:
    """The owner's workspace with something behind every route, and a member per role."""

    auth: dict[str, dict[str, str]]  # role -> console auth headers
    ids: dict[str, str]


async def join_as(node: Node, owner: dict[str, str], email: str, role: str,
                  timezone: str = "UTC") -> dict[str, str]:
    """A member invited with this role who activated through the invitation's link (as the
    invite answers it), in `timezone`; its console auth headers."""
    invited = await node.client.post(f"{MEMBERS}/invite-email",
                                     headers=owner, json={"emails": [email], "role": role})
    assert invited.status_code == 201, invited.text
    (result,) = invited.json()["invitation_results"]
    token = parse_qs(urlsplit(result["url"]).query)["token"][0]
    activated = await node.client.post(f"{CONSOLE}/activate", json={
        "email": email, "token": token, "name": role, "interface_language": "en-US",
        "timezone": timezone, "password": PASSWORD})
    assert activated.status_code == 200, activated.text
    return {"Authorization": f"Bearer {activated.json()['data']['access_token']}"}


async def _created(node: Node, auth: dict[str, str], path: str,
                   body: dict[str, Any] | None = None) -> str:
    response = await node.client.post(f"{CONSOLE}{path}", headers=auth, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def world_of(node: Node, provider: FakeOpenAIServer) -> World:
    owner = await node.setup_and_login()
    await connect_provider(node, owner, provider)
    auth = {"owner": owner}
    for role in ROLES:
        if role != "owner":
            auth[role] = await join_as(node, owner, f"{role}@example.com", role)
    # Members the member rows act on, so that no role above changes or leaves.
    for bystander in ("bystander", "leaver"):
        await join_as(node, owner, f"{bystander}@example.com", "normal")
    workspace = (await node.client.get(f"{CONSOLE}/workspaces/current", headers=owner)).json()
    app_id = await _created(node, owner, "/apps", {"name": "City guide", "mode": "chat"})
    dataset_key = await _created(node, owner, "/datasets/api-keys")
    ids = {
        "app": app_id,
        "workflow_app": await _created(node, owner, "/apps", {"name": "Flow",
                                                             "mode": "workflow"}),
        "chatflow_app": await _created(node, owner, "/apps", {"name": "Chatflow",
                                                             "mode": "advanced-chat"}),
        "completion_app": await _created(node, owner, "/apps", {"name": "Writer",
                                                               "mode": "completion"}),
        "doomed_app": await _created(node, owner, "/apps", {"name": "Doomed", "mode": "chat"}),
        "app_key": await _created(node, owner, f"/apps/{app_id}/api-keys"),
        "dataset_key": dataset_key,
        "provider": "openai", "compatible": "openai_api_compatible", "model_type": "llm",
        "action": "pause", "node": "start", "workspace": workspace["id"],
        "bystander": str(account_id_for("bystander@example.com")),
        "leaver": str(account_id_for("leaver@example.com")),
    }
    key = (await node.client.get(f"{CONSOLE}/datasets/api-keys", headers=owner)).json()
    service = {"Authorization": f"Bearer {key['data'][0]['token']}"}
    dataset = await node.client.post("/v1/datasets", headers=service, json={
        "name": "Guides", "indexing_technique": "economy"})
    assert dataset.status_code == 200, dataset.text
    ids["dataset"] = dataset.json()["id"]
    document = await node.client.post(
        f"/v1/datasets/{ids['dataset']}/document/create-by-text", headers=service,
        json={"name": "Paris", "text": "Paris is the capital of France.",
              "indexing_technique": "economy", "process_rule": {"mode": "automatic"}})
    assert document.status_code == 200, document.text
    ids["document"] = document.json()["document"]["id"]
    batch = document.json()["batch"]

    async def indexed() -> bool:
        # Its indexing moves in steps (the read model changes between them): done before
        # the table starts.
        status = await node.client.get(
            f"/v1/datasets/{ids['dataset']}/documents/{batch}/indexing-status", headers=service)
        return all(d["indexing_status"] == "completed" for d in status.json()["data"])
    await eventually(indexed, timeout=120, interval=0.3)
    return World(auth, ids)


def _filled(template: str, row: Row, world: World) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        # Ids the world has no resource behind (runs, tasks, imports, commands) are fresh:
        # the role check answers before any lookup would.
        return world.ids.get(row.ids.get(name, name.removesuffix("_id")), str(uuid4()))
    return re.sub(r"\{(\w+)(?::\w+)?\}", fill, template)


def url_of(row: Row, world: World) -> str:
    return _filled(row.path, row, world)


def body_of(row: Row, world: World) -> Any:
    """The row's JSON body, its "{name}" values filled as the path's are."""
    if not isinstance(row.json, dict):
        return row.json
    return {key: _filled(value, row, world) if isinstance(value, str) else value
            for key, value in row.json.items()}


State = tuple[int, dict[str, list[str]]]


async def state_of(node: Node) -> State:
    """The event store's head and every row of every projection's read model."""
    rows: dict[str, list[str]] = {}
    read_models = node.container.read_models
    for projection in node.container.projections.values():
        engine = read_models.engine_for(read_models.active(projection.name))
        async with engine.connect() as conn:
            for table in read_tables(projection.metadata):
                # `*`: the columns the database has (a model may declare more, computed ones)
                every_row = select(literal_column("*")).select_from(table)
                rows[table.name] = sorted(map(repr, (await conn.execute(every_row)).all()))
    return node.container.store.max_position(), rows




async def settled_state(node: Node) -> State:
    """The state once what earlier requests set going (projections, indexing, runs) is done:
    two reads a moment apart agree."""
    async def still() -> State | None:
        before = await state_of(node)
        await asyncio.sleep(0.4)
        return before if await state_of(node) == before else None
    state: State = await eventually(still, timeout=60)
    return state
