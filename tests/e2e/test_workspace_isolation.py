"""Workspace isolation over real HTTP: every route of the assembled app (console and Service
API, every method), naming workspace A's resources, is called with each credential of
workspace B (its console token, an app key of each mode, its dataset key). Each call is
refused (404, or 403 where Dify answers that) or, where it names none of A's resources,
answers with B's own data: no answer carries anything of A, no call records an event of A,
and A reads the same afterwards. End users are isolated the same way inside one app.

The matrix comes from the route table: a route without a row here fails the test, so a new
route is either put in the matrix or explicitly skipped with the reason."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from adapters.embedded.postgres import EmbeddedPostgres
from projections.platform.queries import console_identity
from schemas.conversation.naming import end_user_id_for, task_stop_key
from schemas.platform.naming import account_id_for
from tests.chat import MODEL, connect_provider, sse_events
from tests.e2e.test_knowledge import create_dataset, create_text_document, wait_indexed
from tests.e2e.test_workflow_human_chat import REVIEWED
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import (
    Node,
    add_account_with_workspace,
    eventually,
    node_settings,
    running_node,
    served,
)
from tests.process_rules import HIERARCHICAL_RULE
from tests.workflows import edge, end_outputs, graph, graph_node, publish_in_console, text_input

# A word only workspace A's content holds: an answer carrying it leaks A.
SECRET_WORD = "quokkarhythm"
A_OWNER, A_MEMBER = "owner@example.com", "quokka.member@example.com"
FACT = f"The {SECRET_WORD} lighthouse keeper feeds the gulls at dawn. She sings to them."
MODES = ("chat", "completion", "workflow", "advanced-chat")

# Routes no workspace owns anything behind, each with the reason.
NO_TENANT_RESOURCE = {
    "GET /console/api/setup": "the platform's setup state, the same for everyone",
    "POST /console/api/setup": "sets the platform up once; refused after that for anyone",
    "POST /console/api/login": "takes an e-mail and password, no credential",
    "POST /console/api/refresh-token": "takes a refresh token, which is its own credential",
    "POST /console/api/forgot-password": "public: mails a reset code to an e-mail",
    "POST /console/api/forgot-password/validity": "public: the mailed code is the credential",
    "POST /console/api/forgot-password/resets": "public: the mailed code is the credential",
    "POST /console/api/email-code-login": "public: mails a login code to an e-mail",
    "POST /console/api/email-code-login/validity": "public: the mailed code is the credential",
    "POST /console/api/logout": "ends the caller's own session (B's, which the matrix uses)",
    **{f"{method} /triggers/webhook/{{webhook_id}}":
       "the signed webhook id is the credential (Dify's webhook URL), not a key"
       for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")},
    "GET /console/api/activate/check": "the invitation's token is the credential",
    "POST /console/api/activate": "the invitation's token is the credential",
    "GET /health": "liveness, no data", "GET /ready": "readiness, no data",
    "GET /metrics": "Prometheus counters, no tenant data",
    "GET /status": "the status page's static shell (its data: /status.json, in the matrix)",
}

ECHO = graph([graph_node("start", "start", "Start", variables=[text_input("topic")]),
              graph_node("end", "end", "End", outputs=end_outputs(("topic", ["start", "topic"])))],
             [edge("start", "end")])
TOPIC = {"id": str(uuid.uuid4()), "name": "topic", "value_type": "string",
         "value": f"{SECRET_WORD} tea", "description": "what the user asked about"}
REMEMBERING = graph(
    [graph_node("start", "start", "Start", variables=[]),
     graph_node("say", "answer", "Say", answer="Last time: {{#conversation.topic#}}."),
     graph_node("remember", "assigner", "Remember", version="1", write_mode="over-write",
                assigned_variable_selector=["conversation", "topic"],
                input_variable_selector=["sys", "query"])],
    [edge("start", "say"), edge("say", "remember")])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Workspace:
    """A workspace's credentials and the ids of what it holds."""

    tenant_id: uuid.UUID
    console: dict[str, str]
    app_keys: dict[str, dict[str, str]] = field(default_factory=dict)  # by app mode
    dataset_key: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def credentials(self) -> dict[str, dict[str, str]]:
        return {"console token": self.console, "dataset key": self.dataset_key,
                **{f"{mode} app key": key for mode, key in self.app_keys.items()}}


@dataclass(frozen=True)
class Call:
    """One request of a row: its body, query and path values beyond A's defaults
    (`path_value`); `refused_as`: how the route refuses where Dify answers otherwise than
    404/403 (a call with one must be refused even if it names nothing of A)."""

    json: Any = None
    params: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    path: dict[str, str] = field(default_factory=dict)
    refused_as: Callable[[httpx.Response], bool] | None = None


Row = Callable[[Workspace, Workspace], list[Call]]  # (A, B) -> the calls


def plain(a: Workspace, b: Workspace) -> list[Call]:
    """The path names A's resources (filled by `path_value`); no body."""
    return [Call()]


def body(make: Callable[[dict[str, str]], Any]) -> Row:
    return lambda a, b: [Call(json=make(a.ids))]


def query(make: Callable[[dict[str, str]], dict[str, Any]]) -> Row:
    return lambda a, b: [Call(params=make(a.ids))]


def also_under_b(parameter: str, parent: str,
                 make: Callable[[dict[str, str]], Any] | None = None,
                 refused_as: Callable[[httpx.Response], bool] | None = None) -> Row:
    """A's resources named in the body, under A's parent and under B's own `parent` (in path
    `parameter`); where the path names them, `under_b_parents` does this for every row."""
    return lambda a, b: [Call(json=make(a.ids) if make else None, path=path,
                              refused_as=refused_as)
                         for path in ({}, {parameter: b.ids[parent]})]


def a_file(ids: dict[str, str]) -> list[dict[str, str]]:
    return [{"type": "image", "transfer_method": "local_file", "upload_file_id": ids["file"]}]


def upload(a: Workspace, b: Workspace) -> list[Call]:
    return [Call(files={"file": ("notes.txt", FACT.encode(), "text/plain")},
                 data={"user": "alice", "data": "{}"})]


def tag_pairs(a: Workspace, b: Workspace) -> list[Call]:
    """A's tag on A's dataset, B's tag on A's dataset, and A's tag on B's dataset (an
    unknown tag id, which Dify's spec says is ignored: 204, nothing bound)."""
    return [Call(json={"tag_ids": [a.ids["tag"]], "target_id": a.ids["dataset"]}),
            Call(json={"tag_ids": [b.ids["tag"]], "target_id": a.ids["dataset"]}),
            Call(json={"tag_ids": [a.ids["tag"]], "target_id": b.ids["dataset"]},
                 refused_as=lambda r: r.status_code == 204)]


def success_doing_nothing(r: httpx.Response) -> bool:
    # Dify answers a stop of a task that is not the caller's with success, and stops nothing
    return r.status_code == 200 and r.json() == {"result": "success"}


def pending(r: httpx.Response) -> bool:
    # another workspace's command is as unknown as one never sent
    return r.status_code == 200 and r.json()["status"] == "pending" and "result" not in r.json()


def failed_import(r: httpx.Response) -> bool:
    # Dify answers an import it cannot make with 400 and status "failed"
    return r.status_code == 400 and r.json()["status"] == "failed"


def bad_request(message: str) -> Callable[[httpx.Response], bool]:
    return lambda r: r.status_code == 400 and r.json()["message"] == message


def not_found_or(message: str) -> Callable[[httpx.Response], bool]:
    """404, or Dify's 400 with `message` (its ValueError of a child not in the parent)."""
    return lambda r: r.status_code == 404 or bad_request(message)(r)


def stop(a: Workspace, b: Workspace) -> list[Call]:
    return [Call(json={"user": "alice"}, refused_as=success_doing_nothing)]


MODEL_CONFIG = {"model": {"provider": "openai_api_compatible", "name": MODEL, "mode": "chat"},
                "suggested_questions_after_answer": {"enabled": True},
                "text_to_speech": {"enabled": True, "voice": "alloy"},
                "file_upload": {"image": {"enabled": True, "transfer_methods": ["local_file"]}}}
A_DOC = {"name": f"{SECRET_WORD} copy", "text": FACT}
# Every route of the app: how it names A's resources (path values come from `path_value`).
ROWS: dict[str, Row] = {
    # platform
    "GET /console/api/apps": plain,
    "POST /console/api/apps": body(lambda i: {"name": "B's app", "mode": "chat"}),
    "GET /console/api/apps/{app_id}": plain,
    "PUT /console/api/apps/{app_id}": body(lambda i: {"name": "taken over"}),
    "DELETE /console/api/apps/{app_id}": plain,
    "GET /console/api/apps/{app_id}/api-keys": plain,
    "POST /console/api/apps/{app_id}/api-keys": plain,
    "DELETE /console/api/apps/{app_id}/api-keys/{key_id}": plain,
    "GET /console/api/datasets/api-keys": plain,
    "POST /console/api/datasets/api-keys": plain,
    "DELETE /console/api/datasets/api-keys/{key_id}": plain,
    "GET /console/api/commands/{command_id}": lambda a, b: [Call(refused_as=pending)],
    "GET /v1/commands/{command_id}": lambda a, b: [Call(refused_as=pending)],
    "GET /v1/info": plain,
    "GET /v1/meta": plain,
    "GET /console/api/workspaces/current/model-providers/{provider:path}/models/credentials":
        query(lambda i: {"model": MODEL, "model_type": "llm"}),
    "GET /console/api/workspaces/current/model-providers": plain,
    "GET /console/api/workspaces/current/model-providers/{provider:path}/credentials": plain,
    "POST /console/api/workspaces/current/model-providers/{provider:path}/credentials":
        body(lambda i: {"credentials": {"api_key": "sk-b"}}),
    "DELETE /console/api/workspaces/current/model-providers/{provider:path}/credentials": plain,
    "GET /console/api/workspaces/current/model-providers/{provider:path}/models": plain,
    "POST /console/api/workspaces/current/model-providers/{provider:path}/models":
        body(lambda i: {"model": "b-model", "model_type": "llm",
                        "credentials": {"api_key": "sk-b", "endpoint_url": "http://127.0.0.1:9"}}),
    "DELETE /console/api/workspaces/current/model-providers/{provider:path}/models":
        body(lambda i: {"model": "b-model", "model_type": "llm"}),
    "GET /console/api/workspaces/current/models/model-types/{model_type}": plain,
    "GET /console/api/workspaces/current/default-model": query(lambda i: {"model_type": "llm"}),
    "POST /console/api/workspaces/current/default-model": body(lambda i: {"model_settings": [
        {"model_type": "llm", "provider": "openai_api_compatible", "model": MODEL}]}),
    "GET /v1/workspaces/current/models/model-types/{model_type}": plain,
    "GET /console/api/account/profile": plain,
    "POST /console/api/account/password": body(lambda i: {  # B's own, refused: wrong password
        "password": "not-the-password-1", "new_password": "N3w-passw0rd",
        "repeat_new_password": "N3w-passw0rd"}),
    "GET /console/api/workspaces": plain,
    "GET /console/api/workspaces/current": plain,
    "POST /console/api/workspaces/current": plain,
    "POST /console/api/workspaces/switch": body(lambda i: {"tenant_id": i["workspace"]}),
    "GET /console/api/workspaces/current/members": plain,
    "GET /console/api/workspaces/current/dataset-operators": plain,
    "POST /console/api/workspaces/current/members/invite-email": body(lambda i: {
        "emails": ["newcomer@example.com"], "role": "normal", "language": "en-US"}),
    "PUT /console/api/workspaces/current/members/{member_id}/update-role":
        body(lambda i: {"role": "admin"}),
    "DELETE /console/api/workspaces/current/members/{member_id}": plain,
    "POST /console/api/workspaces/current/members/send-owner-transfer-confirm-email":
        body(lambda i: {"language": "en-US"}),  # mails B's owner its own code
    "POST /console/api/workspaces/current/members/owner-transfer-check":
        body(lambda i: {"code": "000000", "token": "not-a-token"}),
    # B's transfer token is checked before the member (a refusal either way); a transfer to
    # another workspace's member is refused by the Workspace aggregate (NotInWorkspace)
    "POST /console/api/workspaces/current/members/{member_id}/owner-transfer":
        lambda a, b: [Call(json={"token": "not-a-transfer-token"},
                           refused_as=lambda r: 400 <= r.status_code < 500)],
    # every workspace's parked events and dead letters: the platform operator's alone
    "GET /status.json": lambda a, b: [Call(refused_as=lambda r: r.status_code == 403)],
    "GET /status/panel": lambda a, b: [Call(refused_as=lambda r: r.status_code == 403)],
    # knowledge
    "POST /v1/datasets/tags": body(lambda i: {"name": "B's tag"}),
    "GET /v1/datasets/tags": plain,
    "PATCH /v1/datasets/tags": body(lambda i: {"tag_id": i["tag"], "name": "taken over"}),
    "DELETE /v1/datasets/tags": body(lambda i: {"tag_id": i["tag"]}),
    "POST /v1/datasets/tags/binding": tag_pairs,
    "POST /v1/datasets/tags/unbinding": tag_pairs,
    "GET /v1/datasets/{dataset_id}/tags": plain,
    "POST /v1/datasets/{dataset_id}/metadata": body(lambda i: {"type": "string", "name": "b"}),
    "GET /v1/datasets/{dataset_id}/metadata": plain,
    "GET /v1/datasets/{dataset_id}/metadata/built-in": plain,
    "POST /v1/datasets/{dataset_id}/metadata/built-in/{action}": plain,
    "PATCH /v1/datasets/{dataset_id}/metadata/{metadata_id}":
        body(lambda i: {"name": "b"}),
    "DELETE /v1/datasets/{dataset_id}/metadata/{metadata_id}": plain,
    "POST /v1/datasets/{dataset_id}/documents/metadata": also_under_b(
        "dataset_id", "dataset", lambda i: {"operation_data": [{
            "document_id": i["document"], "metadata_list": [
                {"id": i["metadata"], "name": "origin", "value": "b"}]}]},
        not_found_or("Document not found.")),
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}/child_chunks":
        body(lambda i: {"content": "b"}),
    "GET /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}/child_chunks":
        plain,
    "PATCH /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}/"
    "child_chunks/{child_chunk_id}": body(lambda i: {"content": "b"}),
    "DELETE /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}/"
    "child_chunks/{child_chunk_id}": plain,
    "POST /v1/datasets/pipeline/file-upload": upload,
    "POST /v1/datasets/{dataset_id}/pipeline/run": plain,
    "POST /v1/datasets/{dataset_id}/pipeline/datasource/nodes/{node_id}/run": plain,
    "GET /v1/datasets/{dataset_id}/pipeline/datasource-plugins": plain,
    "GET /v1/datasets/{dataset_id}/documents/{document_id}/download": plain,
    "POST /v1/datasets/{dataset_id}/documents/download-zip":
        also_under_b("dataset_id", "dataset", lambda i: {"document_ids": [i["document"]]}),
    "POST /v1/datasets": body(lambda i: {"name": "B's dataset"}),
    "GET /v1/datasets": plain,
    "GET /v1/datasets/{dataset_id}": plain,
    "PATCH /v1/datasets/{dataset_id}": body(lambda i: {"name": "taken over"}),
    "DELETE /v1/datasets/{dataset_id}": plain,
    "POST /v1/datasets/{dataset_id}/document/create_by_text": body(lambda i: A_DOC),
    "POST /v1/datasets/{dataset_id}/document/create-by-text": body(lambda i: A_DOC),
    "POST /v1/datasets/{dataset_id}/document/create_by_file": upload,
    "POST /v1/datasets/{dataset_id}/document/create-by-file": upload,
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/update_by_text":
        body(lambda i: {"text": "taken over"}),
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/update-by-text":
        body(lambda i: {"text": "taken over"}),
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/update_by_file": upload,
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/update-by-file": upload,
    "PATCH /v1/datasets/{dataset_id}/documents/{document_id}": body(lambda i: {"name": "b"}),
    "GET /v1/datasets/{dataset_id}/documents": plain,
    "PATCH /v1/datasets/{dataset_id}/documents/status/{action}":
        also_under_b("dataset_id", "dataset", lambda i: {"document_ids": [i["document"]]}),
    "GET /v1/datasets/{dataset_id}/documents/{document_id}": plain,
    "DELETE /v1/datasets/{dataset_id}/documents/{document_id}": plain,
    "GET /v1/datasets/{dataset_id}/documents/{batch}/indexing-status": plain,
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/segments":
        body(lambda i: {"segments": [{"content": "b"}]}),
    "GET /v1/datasets/{dataset_id}/documents/{document_id}/segments": plain,
    "GET /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}": plain,
    "POST /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}":
        body(lambda i: {"segment": {"content": "taken over"}}),
    "DELETE /v1/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}": plain,
    "POST /v1/datasets/{dataset_id}/hit-testing": body(lambda i: {"query": "lighthouse"}),
    "POST /v1/datasets/{dataset_id}/retrieve": body(lambda i: {"query": "lighthouse"}),
    "PATCH /console/api/datasets/{dataset_id}/documents/{document_id}/processing/{action}":
        plain,
    "POST /console/api/datasets/{dataset_id}/retry":
        also_under_b("dataset_id", "dataset", lambda i: {"document_ids": [i["document"]]}),
    "POST /console/api/datasets/{dataset_id}/retry-failed": plain,
    "POST /console/api/datasets/{dataset_id}/documents/{document_id}/reindex": plain,
    "GET /files/{file_id}/file-preview": plain,
    # conversation
    "POST /console/api/apps/{app_id}/model-config": lambda a, b: [
        Call(json=MODEL_CONFIG),
        # B's own app drawing on A's dataset: refused as Dify refuses a dataset not found
        Call(json={**MODEL_CONFIG, "dataset_configs": {"datasets": {"datasets": [
            {"dataset": {"id": a.ids["dataset"], "enabled": True}}]}}},
             path={"app_id": b.ids["chat app"]},
             refused_as=bad_request(f"Dataset {a.ids['dataset']} not found."))],
    "GET /console/api/apps/{app_id}/model-config": plain,
    "GET /console/api/apps/{app_id}/site": plain,
    "POST /console/api/apps/{app_id}/site": body(lambda i: {"title": "taken over"}),
    "GET /v1/parameters": plain,
    "GET /v1/site": plain,
    "POST /v1/chat-messages": lambda a, b: [
        *(Call(json={"inputs": {}, "query": "hi", "user": "alice", "conversation_id": a.ids[c]})
          for c in ("conversation", "advanced-chat conversation")),
        Call(json={"inputs": {}, "query": "hi", "user": "alice", "files": a_file(a.ids)})],
    "POST /v1/completion-messages": body(lambda i: {"inputs": {"query": "hi"}, "user": "alice",
                                                    "files": a_file(i)}),
    "POST /v1/chat-messages/{task_id}/stop": stop,
    "POST /v1/completion-messages/{task_id}/stop": stop,
    "GET /v1/chat-messages/{task_id}/events": query(lambda i: {"user": "alice"}),
    "GET /v1/conversations": query(lambda i: {"user": "alice"}),
    "GET /v1/messages": query(lambda i: {"user": "alice", "conversation_id": i["conversation"]}),
    "POST /v1/conversations/{conversation_id}/name": body(lambda i: {"name": "b", "user": "alice"}),
    "DELETE /v1/conversations/{conversation_id}": body(lambda i: {"user": "alice"}),
    "POST /v1/messages/{message_id}/feedbacks": body(lambda i: {"rating": "like",
                                                                "user": "alice"}),
    "GET /v1/app/feedbacks": plain,
    "GET /v1/end-users/{end_user_id}": plain,
    "GET /v1/messages/{message_id}/suggested": query(lambda i: {"user": "alice"}),
    "POST /v1/files/upload": upload,
    "GET /v1/files/{file_id}/preview": plain,
    "POST /v1/audio-to-text": lambda a, b: [Call(files={"file": ("a.mp3", b"ID3", "audio/mpeg")},
                                              data={"user": "alice"})],
    "POST /v1/text-to-audio": body(lambda i: {"message_id": i["message"], "user": "alice"}),
    "POST /v1/apps/annotations": body(lambda i: {"question": "q", "answer": "a"}),
    "GET /v1/apps/annotations": plain,
    "PUT /v1/apps/annotations/{annotation_id}": body(lambda i: {"question": "q", "answer": "b"}),
    "DELETE /v1/apps/annotations/{annotation_id}": plain,
    "POST /v1/apps/annotation-reply/{action}": body(lambda i: {
        "score_threshold": 0.9, "embedding_provider_name": "openai_api_compatible",
        "embedding_model_name": "bge-m3"}),
    "GET /v1/apps/annotation-reply/{action}/status/{job_id}":
        lambda a, b: [Call(refused_as=bad_request("The job does not exist."))],
    # workflow
    "POST /v1/workflows/run": body(lambda i: {"inputs": {"topic": "t"}, "user": "alice",
                                              "files": a_file(i)}),
    "POST /v1/workflows/{workflow_id}/run": body(lambda i: {"inputs": {"topic": "t"},
                                                            "user": "alice"}),
    "POST /v1/workflows/tasks/{task_id}/stop": stop,
    "GET /v1/workflow/{workflow_run_id}/events": query(lambda i: {"user": "alice"}),
    "GET /v1/workflows/run/{workflow_run_id}": plain,
    "GET /v1/workflows/logs": plain,
    "GET /console/api/apps/{app_id}/workflow-runs": plain,
    "GET /console/api/apps/{app_id}/advanced-chat/workflow-runs": plain,
    "GET /console/api/apps/{app_id}/workflow-runs/count": plain,
    "GET /console/api/apps/{app_id}/workflow-runs/{run_id}": plain,
    "GET /console/api/apps/{app_id}/workflow-runs/{run_id}/node-executions": plain,
    "GET /console/api/apps/{app_id}/workflow-app-logs": plain,
    "GET /console/api/apps/{app_id}/workflows/draft": plain,
    "POST /console/api/apps/{app_id}/workflows/draft": body(lambda i: {"graph": ECHO}),
    "POST /console/api/apps/{app_id}/workflows/publish": body(lambda i: {}),
    "GET /console/api/apps/{app_id}/workflows/publish": plain,
    "GET /console/api/apps/{app_id}/workflows": plain,
    "POST /console/api/apps/{app_id}/workflows/draft/run": body(lambda i: {
        "inputs": {"topic": "t"}}),
    "POST /console/api/apps/{app_id}/workflows/draft/nodes/{node_id}/run": body(lambda i: {
        "inputs": {"topic": "t"}}),
    "POST /console/api/apps/{app_id}/workflow-runs/tasks/{task_id}/stop":
        lambda a, b: [Call(), Call(path={"app_id": b.ids["workflow app"]},
                                   refused_as=success_doing_nothing)],
    "POST /console/api/apps/imports": lambda a, b: [Call(json={
        "mode": "yaml-content", "yaml_content": a.ids["dsl"], "app_id": a.ids["workflow app"]},
        refused_as=failed_import)],
    "POST /console/api/apps/imports/{import_id}/confirm":
        lambda a, b: [Call(refused_as=failed_import)],
    "GET /console/api/apps/imports/{app_id}/check-dependencies": plain,
    "GET /console/api/apps/{app_id}/export": plain,
    "GET /v1/form/human_input/{form_token}": plain,
    "POST /v1/form/human_input/{form_token}": body(lambda i: {
        "inputs": {"note": "b"}, "action": "approve", "user": "alice"}),
    "GET /console/api/apps/{app_id}/triggers": plain,
    "GET /console/api/apps/{app_id}/workflows/triggers/webhook":
        query(lambda i: {"node_id": "start"}),
    "GET /v1/conversations/{conversation_id}/variables": query(lambda i: {"user": "alice"}),
    # monitoring
    **{f"GET /console/api/apps/{{app_id}}/statistics/{figure}": plain for figure in (
        "daily-messages", "daily-conversations", "daily-end-users", "token-costs",
        "average-session-interactions", "user-satisfaction-rate", "average-response-time",
        "tokens-per-second")},
    **{f"GET /console/api/apps/{{app_id}}/workflow/statistics/{figure}": plain for figure in (
        "daily-conversations", "daily-terminals", "token-costs", "average-app-interactions")},
    "PUT /v1/conversations/{conversation_id}/variables/{variable_id}":
        body(lambda i: {"value": "b", "user": "alice"}),
}


def path_value(name: str, route: str, ids: dict[str, str]) -> str:
    """A's value for a path parameter of `route`: the resource of A the route would reach."""
    if name == "app_id":
        mode = ("workflow" if re.search(r"/workflow|/export|check-dependencies|/triggers", route)
                and "advanced-chat" not in route else
                "advanced-chat" if "advanced-chat" in route else "chat")
        return ids[f"{mode} app"]
    if name == "key_id":
        return ids["dataset key"] if "/datasets/" in route else ids["chat app key"]
    if name == "conversation_id":
        return ids["advanced-chat conversation" if "/variables" in route else "conversation"]
    if name == "task_id":
        return ids["workflow task" if "workflow" in route else
                   "completion task" if "completion" in route else "task"]
    if name in ("run_id", "workflow_run_id"):
        return ids["workflow run"]
    if name == "action":
        return ("pause" if "processing" in route else "enable")
    fixed = {"provider": "openai_api_compatible", "model_type": "llm", "node_id": "start"}
    return fixed.get(name) or ids[name.removesuffix("_id").replace("_", " ")]


PARENTS = ("app_id", "dataset_id")


def under_b_parents(template: str, calls: list[Call], a: Workspace,
                    b: Workspace) -> list[Call]:
    """The row's calls and, where the path names A's resources under a parent (an app, a
    dataset), each again under B's own parent of that kind, unless the row names B's parent
    itself."""
    names = re.findall(r"\{(\w+)", template)
    children = [n for n in names if n not in PARENTS
                and path_value(n, template, a.ids) in set(a.ids.values())]
    out = list(calls)
    for parent in (n for n in PARENTS if n in names and children):
        if not any(parent in call.path for call in calls):
            out += [replace(call, path={**call.path, parent: path_value(parent, template, b.ids)})
                    for call in calls]
    return out


def route_table(app: Any) -> dict[str, APIRoute]:
    """Every route the app serves, by "METHOD path" (into included routers: FastAPI keeps
    them whole, under `original_router`, and create_app includes them with no prefix)."""
    table: dict[str, APIRoute] = {}

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                table.update({f"{method} {route.path}": route for method in route.methods})
            elif (router := getattr(route, "original_router", None)) is not None:
                walk(router.routes)
    walk(app.routes)
    return table


def credential_kinds(route: APIRoute) -> set[str]:
    """Which credentials the route takes, from its dependencies: console, app, dataset;
    empty for a route anyone may call."""
    found: set[str] = set()

    def walk(dependant: Any) -> None:
        for sub in dependant.dependencies:
            name = getattr(sub.call, "__qualname__", "")
            if name in ("console_user", "platform_operator") or "member_with_role" in name:
                found.add("console")
            elif "app_api_key" in name:
                found.add("app")
            elif "dataset_api_key" in name:
                found.add("dataset")
            elif "service_api_key" in name:
                found.update({"app", "dataset"})
            walk(sub)
    walk(route.dependant)
    return found


def kind_of(credential: str) -> str:
    """console, app or dataset: the kind of one of `Workspace.credentials`."""
    return "app" if credential.endswith("app key") else credential.split(" ")[0]


# The app modes an app-key route serves where it is not all of them: another mode's key is
# refused for its mode (Dify's not_chat_app & co., or a feature its app lacks) before any
# lookup, which proves nothing about A, so any 4xx will do for it.
CHATS, RUNS = {"chat", "advanced-chat"}, {"workflow", "advanced-chat"}
SERVES = {
    "POST /v1/chat-messages": CHATS,
    "GET /v1/messages": CHATS,
    "POST /v1/conversations/{conversation_id}/name": CHATS,
    "DELETE /v1/conversations/{conversation_id}": CHATS,
    "GET /v1/workflow/{workflow_run_id}/events": RUNS,
    "GET /v1/workflows/run/{workflow_run_id}": RUNS,
    "POST /v1/chat-messages/{task_id}/stop": CHATS,
    "GET /v1/chat-messages/{task_id}/events": CHATS,
    "POST /v1/completion-messages": {"completion"},
    "POST /v1/completion-messages/{task_id}/stop": {"completion"},
    "GET /v1/messages/{message_id}/suggested": {"chat"},
    "POST /v1/text-to-audio": {"chat"},
    "POST /v1/workflows/run": {"workflow"},
    "POST /v1/workflows/{workflow_id}/run": {"workflow"},
    "POST /v1/workflows/tasks/{task_id}/stop": {"workflow"},
    "GET /v1/form/human_input/{form_token}": RUNS,
    "POST /v1/form/human_input/{form_token}": RUNS,
    "GET /v1/conversations/{conversation_id}/variables": {"advanced-chat"},
    "PUT /v1/conversations/{conversation_id}/variables/{variable_id}": {"advanced-chat"},
}


# --- the two workspaces ---------------------------------------------------------------------


@pytest.fixture(scope="module")
async def node(postgres: EmbeddedPostgres, redis_url: str) -> AsyncIterator[Node]:
    database = f"iso_{uuid.uuid4().hex[:12]}"
    postgres.create_database(database)
    async with running_node(node_settings(postgres, database, redis_url)) as n:
        yield n


@pytest.fixture(scope="module")
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        yield client


async def ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json()


async def set_up_apps(node: Node, http: httpx.AsyncClient, ws: Workspace, name: str) -> None:
    """An app of each mode with its key, ready to answer: model configs, workflows
    published; and a dataset key."""
    for mode in MODES:
        app = await ok(await http.post("/console/api/apps", headers=ws.console, json={
            "name": f"{name} {mode}", "mode": mode}))
        key = await ok(await http.post(f"/console/api/apps/{app['id']}/api-keys",
                                       headers=ws.console))
        ws.app_keys[mode] = bearer(key["token"])
        ws.ids[f"{mode} app"], ws.ids[f"{mode} app key"] = app["id"], key["id"]
        if mode in ("chat", "completion"):
            await ok(await http.post(f"/console/api/apps/{app['id']}/model-config",
                                     headers=ws.console, json=MODEL_CONFIG))
    ws.ids["workflow"] = str(await publish_in_console(node, ws.console, ws.ids["workflow app"],
                                                      ECHO))
    await publish_in_console(node, ws.console, ws.ids["advanced-chat app"], REMEMBERING,
                             conversation_variables=[TOPIC])
    dataset_key = await ok(await http.post("/console/api/datasets/api-keys",
                                           headers=ws.console))
    ws.dataset_key, ws.ids["dataset key"] = bearer(dataset_key["token"]), dataset_key["id"]


async def furnish(node: Node, http: httpx.AsyncClient, a: Workspace) -> None:
    """One of every resource in A (their ids in `a.ids`)."""
    await set_up_apps(node, http, a, SECRET_WORD)
    ids, chat = a.ids, a.app_keys["chat"]
    ids["workspace"], ids["owner"] = str(a.tenant_id), str(account_id_for(A_OWNER))
    await ok(await http.post("/console/api/workspaces/current/members/invite-email",
                             headers=a.console, json={"emails": [A_MEMBER], "role": "editor",
                                                      "language": "en-US"}))
    members = await ok(await http.get("/console/api/workspaces/current/members",
                                      headers=a.console))
    ids["member"] = next(m["id"] for m in members["accounts"] if m["email"] == A_MEMBER)
    await ok(await http.post(f"/console/api/apps/{ids['chat app']}/site",
                             headers=a.console, json={"title": f"{SECRET_WORD} site"}))
    answer = await ok(await http.post("/v1/chat-messages", headers=chat, json={
        "inputs": {}, "query": f"Tell me about {SECRET_WORD}", "user": "alice",
        "response_mode": "blocking"}))
    ids["conversation"], ids["message"], ids["task"] = (
        answer["conversation_id"], answer["message_id"], answer["task_id"])
    ids["end user"] = str(end_user_id_for(uuid.UUID(ids["chat app"]), "alice"))
    await ok(await http.post(f"/v1/messages/{ids['message']}/feedbacks", headers=chat,
                             json={"rating": "like", "user": "alice"}))
    completion = await ok(await http.post("/v1/completion-messages",
                                           headers=a.app_keys["completion"], json={
        "inputs": {"query": SECRET_WORD}, "user": "alice", "response_mode": "blocking"}))
    ids["completion task"] = completion["task_id"]
    file = await ok(await http.post("/v1/files/upload", headers=chat, data={"user": "alice"},
                                    files={"file": (f"{SECRET_WORD}.txt", FACT.encode(),
                                                    "text/plain")}))
    ids["file"] = file["id"]
    annotation = await ok(await http.post("/v1/apps/annotations", headers=chat, json={
        "question": f"{SECRET_WORD}?", "answer": "Gulls."}))
    ids["annotation"] = annotation["id"]
    job = await ok(await http.post("/v1/apps/annotation-reply/enable", headers=chat, json={
        "score_threshold": 0.9, "embedding_provider_name": "openai_api_compatible",
        "embedding_model_name": "bge-m3"}))
    ids["job"] = job["job_id"]

    async def settled() -> bool:  # A's background work ends before the matrix watches it
        status = await ok(await http.get(f"/v1/apps/annotation-reply/enable/status/{ids['job']}",
                                         headers=chat))
        members = await ok(await http.get("/console/api/workspaces/current/members",
                                          headers=a.console))
        mail = next(m["invitation_mail"] for m in members["accounts"] if m["email"] == A_MEMBER)
        return status["job_status"] not in ("waiting", "processing") and \
            mail is not None and mail["status"] != "queued"
    await eventually(settled)

    run = await ok(await http.post("/v1/workflows/run", headers=a.app_keys["workflow"], json={
        "inputs": {"topic": SECRET_WORD}, "user": "alice", "response_mode": "blocking"}))
    ids["workflow run"], ids["workflow task"] = run["workflow_run_id"], run["task_id"]
    chatflow = await ok(await http.post("/v1/chat-messages", headers=a.app_keys[
        "advanced-chat"], json={"inputs": {}, "query": f"{SECRET_WORD} tea", "user": "alice",
                                "response_mode": "blocking"}))
    ids["advanced-chat conversation"], ids["variable"] = chatflow["conversation_id"], TOPIC["id"]
    review = await ok(await http.post("/console/api/apps", headers=a.console, json={
        "name": f"{SECRET_WORD} review", "mode": "workflow"}))
    review_key = await ok(await http.post(f"/console/api/apps/{review['id']}/api-keys",
                                          headers=a.console))
    a.app_keys["review"], ids["review app"] = bearer(review_key["token"]), review["id"]
    await publish_in_console(node, a.console, review["id"], REVIEWED)
    paused = await http.post("/v1/workflows/run", headers=a.app_keys["review"], json={
        "inputs": {"topic": SECRET_WORD}, "user": "alice", "response_mode": "streaming"})
    waiting = [e for _, e in sse_events(paused.content) if e["event"] == "human_input_required"]
    ids["form token"] = waiting[0]["data"]["form_token"]
    exported = await ok(await http.get(f"/console/api/apps/{ids['workflow app']}/export",
                                       headers=a.console))
    # A newer DSL version waits for the user's confirmation: a pending import of A's.
    ids["dsl"] = re.sub(r"(?m)^version: .*$", "version: 9.0.0", exported["data"])
    pending_import = await ok(await http.post("/console/api/apps/imports", headers=a.console,
                                              json={"mode": "yaml-content",
                                                    "yaml_content": ids["dsl"]}))
    ids["import"] = pending_import["id"]

    dataset = await create_dataset(node, a.dataset_key, f"{SECRET_WORD} facts")
    created = await create_text_document(node, a.dataset_key, dataset["id"], SECRET_WORD,
                                         f"{FACT}\n\n{FACT} Again.",
                                         doc_form="hierarchical_model",
                                         process_rule=HIERARCHICAL_RULE)
    await wait_indexed(node.client, a.dataset_key, dataset["id"], created["batch"])
    ids["dataset"], ids["document"], ids["batch"] = (
        dataset["id"], created["document"]["id"], created["batch"])
    base = f"/v1/datasets/{ids['dataset']}"
    segments = await ok(await http.get(f"{base}/documents/{ids['document']}/segments",
                                       headers=a.dataset_key))
    ids["segment"] = segments["data"][0]["id"]
    children = await ok(await http.get(
        f"{base}/documents/{ids['document']}/segments/{ids['segment']}/child_chunks",
        headers=a.dataset_key))
    ids["child chunk"] = children["data"][0]["id"]
    metadata = await ok(await http.post(f"{base}/metadata", headers=a.dataset_key,
                                        json={"type": "string", "name": "origin"}))
    ids["metadata"] = metadata["id"]
    ids["tag"] = await a_tag(http, a, f"{SECRET_WORD} tag")
    bound = await http.post("/v1/datasets/tags/binding", headers=a.dataset_key,
                            json={"tag_ids": [ids["tag"]], "target_id": ids["dataset"]})
    assert bound.status_code == 204, bound.text
    async with node.container.engine.connect() as conn:
        ids["command"] = str((await conn.execute(text(
            "SELECT command_id FROM command_outcomes WHERE aggregate_id = :a LIMIT 1"),
            {"a": ids["chat app"]})).scalar_one())


async def a_tag(http: httpx.AsyncClient, ws: Workspace, name: str) -> str:
    tag = await ok(await http.post("/v1/datasets/tags", headers=ws.dataset_key,
                                   json={"name": name}))
    return str(tag["id"])


@pytest.fixture(scope="module")
async def workspaces(node: Node, http: httpx.AsyncClient, provider: FakeOpenAIServer,
                     ) -> tuple[Workspace, Workspace]:
    """A, set up through /console/api/setup with one of everything; B, created by the
    CreateWorkspace command for a new owner, with apps of every mode ready to answer, a
    dataset and a tag (so B's calls get as far as the lookups of what they name)."""
    provider.reset()
    a_auth = await node.setup_and_login()
    b_auth = await add_account_with_workspace(node, "rival@example.com")
    tenants = {}
    for email in (A_OWNER, "rival@example.com"):
        identity = await console_identity(node.container.engine, account_id_for(email))
        assert identity is not None
        tenants[email] = identity[1]
    assert tenants[A_OWNER] != tenants["rival@example.com"]  # B works in B
    a = Workspace(tenants[A_OWNER], a_auth)
    b = Workspace(tenants["rival@example.com"], b_auth)
    for ws in (a, b):  # each console works in its own workspace
        current = await ok(await http.get("/console/api/workspaces/current", headers=ws.console))
        assert current["id"] == str(ws.tenant_id), current
    for ws in (a, b):
        await connect_provider(node, ws.console, provider)
    await furnish(node, http, a)
    await set_up_apps(node, http, b, "Rival")
    b.ids["dataset"] = (await create_dataset(node, b.dataset_key, "Rival facts"))["id"]
    b.ids["tag"] = await a_tag(http, b, "Rival tag")
    return a, b


async def what_a_reads(http: httpx.AsyncClient, a: Workspace) -> dict[str, Any]:
    """A's resources as A's own credentials read them."""
    i, console, chat = a.ids, a.console, a.app_keys["chat"]
    base = f"/v1/datasets/{i['dataset']}"
    segments = f"{base}/documents/{i['document']}/segments"
    reads = {
        "apps": ("/console/api/apps", console, None),
        **{f"{mode} app": (f"/console/api/apps/{i[f'{mode} app']}", console, None)
           for mode in MODES},
        "app keys": (f"/console/api/apps/{i['chat app']}/api-keys", console, None),
        "dataset keys": ("/console/api/datasets/api-keys", console, None),
        "model config": (f"/console/api/apps/{i['chat app']}/model-config", console, None),
        "site": (f"/console/api/apps/{i['chat app']}/site", console, None),
        "providers": ("/console/api/workspaces/current/model-providers", console, None),
        "draft": (f"/console/api/apps/{i['workflow app']}/workflows/draft", console, None),
        "runs": (f"/console/api/apps/{i['workflow app']}/workflow-runs", console, None),
        "conversations": ("/v1/conversations", chat, {"user": "alice"}),
        "messages": ("/v1/messages", chat, {"user": "alice", "conversation_id":
                                            i["conversation"]}),
        "annotations": ("/v1/apps/annotations", chat, None),
        "variables": (f"/v1/conversations/{i['advanced-chat conversation']}/variables",
                      a.app_keys["advanced-chat"], {"user": "alice"}),
        "datasets": ("/v1/datasets", a.dataset_key, None),
        "documents": (f"{base}/documents", a.dataset_key, None),
        "segments": (segments, a.dataset_key, None),
        "child chunks": (f"{segments}/{i['segment']}/child_chunks", a.dataset_key, None),
        "metadata": (f"{base}/metadata", a.dataset_key, None),
        "tags": ("/v1/datasets/tags", a.dataset_key, None),
        "workspace": ("/console/api/workspaces/current", console, None),
        "members": ("/console/api/workspaces/current/members", console, None),
        "form": (f"/v1/form/human_input/{i['form token']}", a.app_keys["review"], None),
    }
    seen = {}
    for name, (path, headers, params) in reads.items():
        response = await http.get(path, headers=headers, params=params)
        assert response.status_code == 200, (name, response.text)
        seen[name] = response.json()
    for key in seen["app keys"]["data"] + seen["dataset keys"]["data"]:
        key.pop("last_used_at")  # A's own reads above use them
    return seen


def a_events_since(node: Node, position: int, a: Workspace) -> list[str]:
    """Events recorded after `position` that touch A: of its tenant, or on an aggregate A
    named or began (whatever tenant the event says)."""
    store, owned = node.container.store, set(a.ids.values())

    def of_a(e: Any) -> bool:
        return (e.tenant_id == a.tenant_id or str(e.aggregate_id) in owned
                or store.load(e.aggregate_id)[0].tenant_id == a.tenant_id)
    return [f"{e.type} on {e.aggregate_id}" for e in store.read_from(position, 10_000)
            if of_a(e)]


def markers(a: Workspace) -> set[str]:
    """What no answer to B may carry: A's ids, its members' e-mails, its secret word."""
    return {v for k, v in a.ids.items() if k != "dsl"} | {SECRET_WORD, A_OWNER, A_MEMBER}


def fill(template: str, a: Workspace, overrides: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::path)?\}",
                  lambda m: overrides.get(m[1]) or path_value(m[1], template, a.ids), template)


# --- the matrix -------------------------------------------------------------------------------


async def test_every_route_refuses_workspace_b_everything_of_workspace_a(
        node: Node, http: httpx.AsyncClient, workspaces: tuple[Workspace, Workspace]) -> None:
    a, b = workspaces
    routes = route_table(node.app)
    assert len(routes) > 100, "the route table is read from the app"
    unlisted = sorted(set(routes) - set(ROWS) - set(NO_TENANT_RESOURCE))
    assert not unlisted, f"routes with no row in the isolation matrix: {unlisted}"
    stale = sorted((set(ROWS) | set(NO_TENANT_RESOURCE)) - set(routes))
    assert not stale, f"rows of routes the app no longer has: {stale}"

    before = await what_a_reads(http, a)
    a_markers, a_ids = markers(a), set(a.ids.values())
    problems: list[str] = []
    calls = 0
    for name, make in ROWS.items():
        method, template = name.split(" ", 1)
        kinds = credential_kinds(routes[name])
        for request in under_b_parents(template, make(a, b), a, b):
            path = fill(template, a, request.path)
            sent = f"{path} {request.json} {request.params} {request.data}"
            names_a = any(i in sent for i in a_ids)
            for credential, headers in b.credentials().items():
                calls += 1
                position = node.container.store.max_position()
                response = await http.request(
                    method, path, headers=headers, json=request.json, params=request.params,
                    files=request.files, data=request.data)
                where = f"{name} ({path} {request.json}) with B's {credential}"
                kind, status = kind_of(credential), response.status_code
                reaches = not kinds or kind in kinds
                other_mode = kind == "app" and credential.removesuffix(" app key") not in \
                    SERVES.get(name, MODES)
                if status >= 500:
                    problems.append(f"{where}: {status} {response.text[:200]}")
                elif not reaches and status != 401:
                    problems.append(f"{where}: {status} for a credential the route does not "
                                    f"take (401 expected)")
                elif reaches and other_mode and status < 400:
                    problems.append(f"{where}: {status} for an app of a mode the route does "
                                    f"not serve")
                elif reaches and not other_mode and (names_a or request.refused_as) and not (
                        request.refused_as(response) if request.refused_as
                        else status in (403, 404)):
                    problems.append(f"{where}: {status}, not refused: {response.text[:200]}")
                leaked = sorted(m for m in a_markers if m in response.text and m not in sent)
                if leaked:
                    problems.append(f"{where}: the answer carries A's {leaked}")
                if changed := a_events_since(node, position, a):
                    problems.append(f"{where}: recorded {changed}")
    for task in ("task", "completion task", "workflow task"):
        if await node.container.kv.get(task_stop_key(uuid.UUID(a.ids[task]))) is not None:
            problems.append(f"A's {task} was asked to stop")
    assert not problems, f"{len(problems)} of {calls} calls:\n" + "\n".join(problems)
    assert await what_a_reads(http, a) == before


# --- end users ----------------------------------------------------------------------------------


async def test_one_end_user_reaches_nothing_of_another_in_the_same_app(
        node: Node, http: httpx.AsyncClient, workspaces: tuple[Workspace, Workspace]) -> None:
    """A's own keys, another end user (`mallory`): alice's conversations, messages, files,
    tasks and conversation variables are not found, and nothing of hers changes. (Dify does
    not scope by end user what an app's key reads whoever asks: its end users, workflow runs
    and logs, uploaded files' previews, annotations.)"""
    a, _ = workspaces
    i, chat = a.ids, a.app_keys["chat"]
    mallory = {"user": "mallory"}
    calls: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
        ("GET", "/v1/messages", chat, {"params": {**mallory,
                                                  "conversation_id": i["conversation"]}}),
        ("POST", f"/v1/conversations/{i['conversation']}/name", chat,
         {"json": {**mallory, "name": "mine now"}}),
        ("DELETE", f"/v1/conversations/{i['conversation']}", chat, {"json": mallory}),
        ("POST", f"/v1/messages/{i['message']}/feedbacks", chat,
         {"json": {**mallory, "rating": "dislike"}}),
        ("GET", f"/v1/messages/{i['message']}/suggested", chat, {"params": mallory}),
        ("POST", "/v1/text-to-audio", chat, {"json": {**mallory, "message_id": i["message"]}}),
        ("POST", "/v1/chat-messages", chat, {"json": {
            **mallory, "inputs": {}, "query": "hi", "conversation_id": i["conversation"]}}),
        ("POST", "/v1/chat-messages", chat, {"json": {
            **mallory, "inputs": {}, "query": "hi", "files": a_file(i)}}),
        ("GET", f"/v1/chat-messages/{i['task']}/events", chat, {"params": mallory}),
        ("GET", f"/v1/conversations/{i['advanced-chat conversation']}/variables",
         a.app_keys["advanced-chat"], {"params": mallory}),
        ("PUT", f"/v1/conversations/{i['advanced-chat conversation']}/variables/"
         f"{i['variable']}", a.app_keys["advanced-chat"], {"json": {**mallory, "value": "x"}}),
    ]
    before = await what_a_reads(http, a)
    problems = []
    for method, path, key, request in calls:
        position = node.container.store.max_position()
        response = await http.request(method, path, headers=key, **request)
        if response.status_code != 404:
            problems.append(f"{method} {path} {request}: {response.status_code} "
                            f"{response.text[:200]}")
        if changed := a_events_since(node, position, a):
            problems.append(f"{method} {path} {request}: recorded {changed}")
    stopped = await http.post(f"/v1/chat-messages/{i['task']}/stop", headers=chat, json=mallory)
    assert stopped.json() == {"result": "success"}  # as Dify answers, stopping nothing
    assert await node.container.kv.get(task_stop_key(uuid.UUID(i["task"]))) is None
    listed = await ok(await http.get("/v1/conversations", headers=chat, params=mallory))
    assert listed["data"] == [] and SECRET_WORD not in str(listed)
    assert not problems, "\n".join(problems)
    assert await what_a_reads(http, a) == before


# --- vectors ------------------------------------------------------------------------------------


async def test_retrieval_in_workspace_b_never_returns_a_segments(
        node: Node, http: httpx.AsyncClient, workspaces: tuple[Workspace, Workspace]) -> None:
    """B's retrieval, asked what only A's documents answer: B's dataset searched through the
    Service API, and a workflow of B naming A's dataset in its knowledge-retrieval node,
    return B's segments alone."""
    a, b = workspaces
    dataset = await create_dataset(node, b.dataset_key, "Rival harbour")
    created = await create_text_document(
        node, b.dataset_key, dataset["id"], "harbour",
        "The harbour master rings the bell when the ferry leaves.\n\n"
        "Gulls nest on the old pier in spring.")
    await wait_indexed(node.client, b.dataset_key, dataset["id"], created["batch"])
    question = f"Who feeds the gulls at the {SECRET_WORD} lighthouse at dawn?"
    for route in ("hit-testing", "retrieve"):
        found = await ok(await http.post(f"/v1/datasets/{dataset['id']}/{route}",
                                         headers=b.dataset_key, json={"query": question}))
        contents = [r["segment"]["content"] for r in found["records"]]
        assert contents and not any(SECRET_WORD in c for c in contents), contents

    app = await ok(await http.post("/console/api/apps", headers=b.console, json={
        "name": "Rival search", "mode": "workflow"}))
    key = await ok(await http.post(f"/console/api/apps/{app['id']}/api-keys",
                                   headers=b.console))
    await publish_in_console(node, b.console, app["id"], graph(
        [graph_node("start", "start", "Start", variables=[text_input("question")]),
         graph_node("search", "knowledge-retrieval", "Search",
                    query_variable_selector=["start", "question"],
                    dataset_ids=[a.ids["dataset"], dataset["id"]], retrieval_mode="multiple",
                    multiple_retrieval_config={"top_k": 4, "reranking_enable": False}),
         graph_node("end", "end", "End", outputs=end_outputs(("found", ["search", "result"])))],
        [edge("start", "search"), edge("search", "end")]))
    run = await ok(await http.post("/v1/workflows/run", headers=bearer(key["token"]), json={
        "inputs": {"question": question}, "user": "bob", "response_mode": "blocking"}))
    found = run["data"]["outputs"]["found"]
    assert run["data"]["status"] == "succeeded" and found, run
    assert {r["metadata"]["dataset_id"] for r in found} == {dataset["id"]}
    assert SECRET_WORD not in str(run)


# --- idempotency keys ---------------------------------------------------------------------------


async def test_an_idempotency_key_of_a_is_a_new_request_for_b(
        http: httpx.AsyncClient, workspaces: tuple[Workspace, Workspace]) -> None:
    """The same Idempotency-Key and body from B makes B's own app: A's answer is never
    replayed to B."""
    a, b = workspaces
    request = {"name": "Keyed", "mode": "chat"}
    key = {"Idempotency-Key": "shared-key-1"}
    made = [await ok(await http.post("/console/api/apps", headers={**ws.console, **key},
                                     json=request)) for ws in (a, b, a)]
    assert made[0]["id"] == made[2]["id"] != made[1]["id"]
    for ws, app in ((a, made[0]), (b, made[1])):
        listed = await ok(await http.get("/console/api/apps", headers=ws.console,
                                         params={"name": "Keyed"}))
        assert [x["id"] for x in listed["data"]] == [app["id"]]


# --- one account in both ------------------------------------------------------------------------


async def test_an_account_in_both_workspaces_reaches_only_the_one_it_works_in(
        http: httpx.AsyncClient, workspaces: tuple[Workspace, Workspace]) -> None:
    """A's owner, invited into B and switched there: its console token reaches B's apps
    alone, A's are not found until it switches back. (Last in the module: A's owner stays a
    member of B.)"""
    a, b = workspaces
    invited = await ok(await http.post(
        "/console/api/workspaces/current/members/invite-email", headers=b.console,
        json={"emails": [A_OWNER], "role": "editor", "language": "en-US"}))
    assert invited["invitation_results"][0]["status"] == "success", invited
    a_app = f"/console/api/apps/{a.ids['chat app']}"
    for tenant_id, reaches_a in ((b.tenant_id, False), (a.tenant_id, True)):
        await ok(await http.post("/console/api/workspaces/switch", headers=a.console,
                                 json={"tenant_id": str(tenant_id)}))
        current = await ok(await http.get("/console/api/workspaces/current",
                                          headers=a.console))
        assert current["id"] == str(tenant_id)
        listed = await ok(await http.get("/console/api/apps", headers=a.console))
        assert (SECRET_WORD in str(listed)) is reaches_a
        assert ("Rival chat" in str(listed)) is not reaches_a
        assert (await http.get(a_app, headers=a.console)).status_code == (
            200 if reaches_a else 404)
        runs = f"/console/api/apps/{a.ids['workflow app']}/workflow-runs/{a.ids['workflow run']}"
        assert (await http.get(runs, headers=a.console)).status_code == (
            200 if reaches_a else 404)
