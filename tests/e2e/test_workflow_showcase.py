"""The showcase: Dify DSL files written as Dify exports them (tests/fixtures/workflows), which
together use every node type, each imported through the console, pointed at this workspace
(the configured model, a dataset, the environment's values: edited in the draft as a user
does after an import), published and run over real HTTP, blocking and streaming, every
answer and event checked against Dify's spec; exported and imported again, the copy runs the
same. Dify's SDKs drive them unmodified: dify-client-python's workflow calls (run blocking,
streaming, stop) and dify_client's ChatClient against the advanced-chat app."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dify_client import ChatClient

from tests.chat import MODEL, connect_provider, sse_events
from tests.clients import run_dify_client_python
from tests.e2e.test_knowledge import FACTS, create_dataset, create_text_document, wait_indexed
from tests.fakes.openai_server import FakeOpenAIServer
from tests.harness import Node, eventually, served
from tests.local_http import QuietHandler, serving
from tests.spec import chat_event_schema, validate
from tests.workflows import check_workflow_events

WORKFLOWS = Path(__file__).parent.parent / "fixtures" / "workflows"
HOOK_TOKEN = "trip-hook-secret-7f3a"
NOTES = b"# Stops\n- harbour walk\n- old town\n- fish market\n- castle hill\n"
LOCAL_HOSTS = pytest.mark.settings(SSRF_ALLOWED_HOSTS="127.0.0.1")


@dataclass
class Received:
    """What the local trip service was sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class TripService:
    url: str
    received: list[Received] = field(default_factory=list)
    # a request for this city is held until released (a run to stop mid-node)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def trip_service() -> Iterator[TripService]:
    service = TripService("")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            service.received.append(Received("POST", self.path, dict(self.headers), body))
            if body.get("city") == "Slowtown":
                service.release.wait(30)
            self.reply(200, {"Content-Type": "application/json"},
                       json.dumps({"accepted": True, "trip": body["city"]}).encode())

    with serving(Handler) as port:
        service.url = f"http://127.0.0.1:{port}"
        yield service
        service.release.set()


# -- the console, as a user goes through it ---------------------------------------------------


async def import_dsl(node: Node, auth: dict[str, str], text: str) -> str:
    imported = await node.client.post("/console/api/apps/imports", headers=auth, json={
        "mode": "yaml-content", "yaml_content": text})
    assert imported.status_code == 200, imported.text
    assert imported.json()["status"] in ("completed", "completed-with-warnings"), imported.text
    return str(imported.json()["app_id"])


async def edit_and_publish(node: Node, auth: dict[str, str], app_id: str,
                           edit: Callable[[dict[str, Any]], None]) -> None:
    """The draft as the console shows it, changed by `edit`, saved with its hash, then
    published."""
    base = f"/console/api/apps/{app_id}/workflows"
    draft = (await node.client.get(f"{base}/draft", headers=auth)).json()
    edit(draft)
    saved = await node.client.post(f"{base}/draft", headers=auth, json={
        key: draft[key] for key in ("graph", "features", "environment_variables",
                                    "conversation_variables", "hash")})
    assert saved.status_code == 200, saved.text
    published = await node.client.post(f"{base}/publish", headers=auth, json={})
    assert published.status_code == 200, published.text


async def service_key(node: Node, auth: dict[str, str], app_id: str) -> dict[str, str]:
    key = await node.client.post(f"/console/api/apps/{app_id}/api-keys", headers=auth)
    assert key.status_code in (200, 201), key.text
    return {"Authorization": f"Bearer {key.json()['token']}"}


async def export(node: Node, auth: dict[str, str], app_id: str, **params: Any) -> str:
    exported = await node.client.get(f"/console/api/apps/{app_id}/export", headers=auth,
                                     params=params)
    assert exported.status_code == 200, exported.text
    return str(exported.json()["data"])


def nodes_of(draft: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n["data"] for n in draft["graph"]["nodes"]}


def set_environment(draft: dict[str, Any], **values: str) -> None:
    for variable in draft["environment_variables"]:
        if variable["name"] in values:
            variable["value"] = values[variable["name"]]


# -- trip digest: every node that needs no model ----------------------------------------------


async def trip_app(node: Node, auth: dict[str, str], service: TripService,
                   text: str) -> dict[str, str]:
    """The trip digest imported from `text`, its environment filled in, published: its key."""
    app_id = await import_dsl(node, auth, text)
    await edit_and_publish(node, auth, app_id, lambda draft: set_environment(
        draft, HOOK_URL=service.url, HOOK_TOKEN=HOOK_TOKEN))
    return await service_key(node, auth, app_id)


async def run_trip(http: httpx.AsyncClient, key: dict[str, str], city: str, budget: int,
                   mode: str) -> Any:
    notes = await upload_notes_over(http, key)
    answer = await http.post("/v1/workflows/run", headers=key, json={
        "inputs": {"city": city, "budget": budget, "notes": notes}, "user": "ann",
        "response_mode": mode})
    assert answer.status_code == 200, answer.text
    if mode == "blocking":
        validate("WorkflowBlockingResponse", answer.json())
        return answer.json()
    events = [e for _, e in sse_events(answer.content)]
    check_workflow_events(events)
    return events


async def upload_notes_over(http: httpx.AsyncClient, key: dict[str, str]) -> dict[str, Any]:
    uploaded = await http.post("/v1/files/upload", headers=key, data={"user": "ann"},
                               files={"file": ("trip.md", NOTES, "text/markdown")})
    assert uploaded.status_code == 201, uploaded.text
    return {"type": "document", "transfer_method": "local_file",
            "upload_file_id": uploaded.json()["id"]}


BERGEN = {
    "answer": '{"accepted": true, "trip": "Bergen"}',
    "summary": "Bergen after 3 saving rounds (120 EUR): 4. CASTLE HILL, 2. OLD TOWN",
    "stops": ["4. CASTLE HILL", "2. OLD TOWN"], "top": "4. CASTLE HILL", "count": 4,
    "rounds": 3, "saved": 120}


@LOCAL_HOSTS
async def test_trip_digest_runs_blocking_and_streaming_and_survives_export(
        node: Node, trip_service: TripService) -> None:
    auth = await node.setup_and_login()
    text = (WORKFLOWS / "trip_digest_workflow.yml").read_text()
    key = await trip_app(node, auth, trip_service, text)
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        # budget 100, four stops: the notify case; the trip service gets the summary
        blocking = await run_trip(http, key, "Bergen", 100, "blocking")
        assert blocking["data"]["status"] == "succeeded", blocking
        assert blocking["data"]["outputs"] == BERGEN
        [sent] = trip_service.received
        assert (sent.method, sent.path) == ("POST", "/trips?source=eddy")
        assert sent.headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
        assert sent.headers["X-Trip-City"] == "Bergen"
        assert sent.headers["Idempotency-Key"]
        assert sent.body == {"city": "Bergen", "summary": BERGEN["summary"], "stops": 4}

        # the run's detail (a read model) shows what the answer said
        async def detail() -> dict[str, Any] | None:
            shown = await http.get(f"/v1/workflows/run/{blocking['workflow_run_id']}",
                                   headers=key)
            return shown.json() if shown.status_code == 200 \
                and shown.json()["status"] == "succeeded" else None
        shown = await eventually(detail)
        validate("WorkflowRunDetailResponse", shown)
        assert shown["outputs"] == BERGEN
        assert shown["total_steps"] == blocking["data"]["total_steps"]

        # a city in the north with a small budget: the second case, no request
        events = await run_trip(http, key, "Tromsø", 50, "streaming")
        kinds = [e["event"] for e in events]
        assert kinds[0] == "workflow_started" and kinds[-1] == "workflow_finished"
        assert {"iteration_started", "iteration_next", "iteration_completed", "loop_started",
                "loop_next", "loop_completed"} <= set(kinds), kinds
        finished = {e["data"]["node_id"]: e["data"] for e in events
                    if e["event"] == "node_finished" and not e["data"].get("iteration_id")
                    and not e["data"].get("loop_id")}
        assert finished["route"]["outputs"]["selected_case_id"] == "north"
        assert "notify" not in finished
        labels = sorted(e["data"]["outputs"]["label"] for e in events
                        if e["event"] == "node_finished" and e["data"]["node_id"] == "label")
        assert labels == ["1. HARBOUR WALK", "2. OLD TOWN", "3. FISH MARKET", "4. CASTLE HILL"]
        assert events[-1]["data"]["outputs"] == {
            "answer": "Welcome to Tromsø, no notification needed.",
            "summary": "Tromsø after 2 saving rounds (80 EUR): 4. CASTLE HILL, 2. OLD TOWN",
            "stops": BERGEN["stops"], "top": BERGEN["top"], "count": 4, "rounds": 2,
            "saved": 80}
        assert len(trip_service.received) == 1
        # the secret never travels in an event
        assert HOOK_TOKEN not in json.dumps(events)

        # exported: no secret unless asked for; the export with it imports and runs the same
        assert HOOK_TOKEN not in await export(node, auth, await app_of(node, auth, text))
        copy = await export(node, auth, await app_of(node, auth, text), include_secret="true")
        assert yaml.safe_load(copy)["workflow"]["graph"] == \
            yaml.safe_load(text)["workflow"]["graph"]
        again = await service_key(node, auth, await import_and_publish(node, auth, copy))
        blocking = await run_trip(http, again, "Bergen", 100, "blocking")
        assert blocking["data"]["outputs"] == BERGEN
        assert trip_service.received[-1].headers["Authorization"] == f"Bearer {HOOK_TOKEN}"


async def app_of(node: Node, auth: dict[str, str], text: str) -> str:
    """The id of the app imported from `text` first (by its name)."""
    name = yaml.safe_load(text)["app"]["name"]
    apps = (await node.client.get("/console/api/apps", headers=auth,
                                  params={"name": name, "limit": 100})).json()["data"]
    return str(sorted(apps, key=lambda a: a["created_at"])[0]["id"])


async def import_and_publish(node: Node, auth: dict[str, str], text: str) -> str:
    app_id = await import_dsl(node, auth, text)
    published = await node.client.post(f"/console/api/apps/{app_id}/workflows/publish",
                                       headers=auth, json={})
    assert published.status_code == 200, published.text
    return app_id


@LOCAL_HOSTS
async def test_dify_client_python_runs_and_stops_the_trip_digest(
        node: Node, trip_service: TripService) -> None:
    auth = await node.setup_and_login()
    key = await trip_app(node, auth, trip_service,
                         (WORKFLOWS / "trip_digest_workflow.yml").read_text())
    async with served(node.app) as url:
        result = await run_dify_client_python("""
            from dify_client import Client, models
            client = Client(api_key=API_KEY, api_base=BASE_URL + "/v1")

            def notes():
                uploaded = client.upload_files(("trip.md", NOTES, "text/markdown"),
                                             models.UploadFileRequest(user="ann"))
                return {"type": "document", "transfer_method": "local_file",
                        "upload_file_id": uploaded.id}

            def run(city, budget, mode):
                return client.run_workflows(models.WorkflowsRunRequest(
                    inputs={"city": city, "budget": budget, "notes": notes()},
                    response_mode=mode, user="ann"))

            blocking = run("Bergen", 100, "blocking")
            streamed = [e.event for e in run("Oslo", 50, "streaming")]
            stopped = None
            for e in run("Slowtown", 100, "streaming"):
                data = e.data if isinstance(e.data, dict) else e.data.model_dump()
                if e.event == "node_started" and data["node_id"] == "notify":
                    client.stop_workflows(e.task_id, models.StopRequest(user="ann"))
                if e.event == "workflow_finished":
                    stopped = data["status"]
            emit({"status": blocking.data.status, "outputs": blocking.data.outputs,
                  "streamed": streamed, "stopped": stopped})
        """.replace("NOTES", repr(NOTES)), base_url=url,
            api_key=key["Authorization"].removeprefix("Bearer "))
    assert result["status"] == "succeeded"
    assert result["outputs"] == BERGEN
    assert result["streamed"][0] == "workflow_started"
    assert result["streamed"][-1] == "workflow_finished"
    assert result["stopped"] == "stopped"
    assert [r.body["city"] for r in trip_service.received] == ["Bergen", "Slowtown"]


async def test_the_parameters_of_the_trip_digest_are_its_start_form(node: Node) -> None:
    """As Dify's: the published workflow's start node and features (a client builds its
    form from them); none published, the app is unavailable."""
    auth = await node.setup_and_login()
    app_id = await import_dsl(node, auth, (WORKFLOWS / "trip_digest_workflow.yml").read_text())
    key = await service_key(node, auth, app_id)
    unpublished = await node.client.get("/v1/parameters", headers=key)
    assert (unpublished.status_code, unpublished.json()["code"]) == (400, "app_unavailable")
    published = await node.client.post(f"/console/api/apps/{app_id}/workflows/publish",
                                       headers=auth, json={})
    assert published.status_code == 200, published.text
    parameters = await node.client.get("/v1/parameters", headers=key)
    assert parameters.status_code == 200, parameters.text
    validate("AppParametersResponse", parameters.json())
    form = [(kind, control["variable"]) for item in parameters.json()["user_input_form"]
            for kind, control in item.items()]
    assert form == [("text-input", "city"), ("number", "budget"), ("file", "notes")]
    assert parameters.json()["user_input_form"][2]["file"]["allowed_file_types"] == ["document"]
    assert parameters.json()["retriever_resource"] == {"enabled": True}  # the DSL's features


# -- support desk: the model nodes ------------------------------------------------------------

REFUND_FACT, REFUND_QUESTION = FACTS[1]
LUNCH_FACT = FACTS[2][0]


@pytest.fixture
async def workspace(node: Node, provider: FakeOpenAIServer) -> dict[str, str]:
    """A set-up workspace with the fake model provider connected: its console auth."""
    provider.reset()
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    return auth


async def policies_dataset(node: Node, auth: dict[str, str]) -> str:
    """A dataset of one indexed document, `policies`: the refund and the lunch paragraphs."""
    token = (await node.client.post("/console/api/datasets/api-keys",
                                    headers=auth)).json()["token"]
    key = {"Authorization": f"Bearer {token}"}
    dataset = await create_dataset(node, key, "Shop policies")
    created = await create_text_document(node, key, dataset["id"], "policies",
                                         f"{REFUND_FACT}\n\n{LUNCH_FACT}")
    await wait_indexed(node.client, key, dataset["id"], created["batch"])
    return str(dataset["id"])


def on_this_workspace(dataset_id: str) -> Callable[[dict[str, Any]], None]:
    """The edit after an import: model nodes on the configured model, the retrieval node on
    this workspace's dataset."""
    def edit(draft: dict[str, Any]) -> None:
        for data in nodes_of(draft).values():
            if "model" in data:
                data["model"] = {**data["model"], "provider": "openai_api_compatible",
                                 "name": MODEL}
            if data["type"] == "knowledge-retrieval":
                data["dataset_ids"] = [dataset_id]
    return edit


async def test_support_desk_runs_the_model_nodes_blocking_and_streaming(
        node: Node, workspace: dict[str, str], provider: FakeOpenAIServer) -> None:
    auth = workspace
    dataset_id = await policies_dataset(node, auth)
    app_id = await import_dsl(node, auth, (WORKFLOWS / "support_desk_workflow.yml").read_text())
    await edit_and_publish(node, auth, app_id, on_this_workspace(dataset_id))
    key = await service_key(node, auth, app_id)

    async def refund(http: httpx.AsyncClient, key: dict[str, str]) -> dict[str, Any]:
        provider.script_chat('{"category_id": "refund", "category_name": "Refunds"}',
                             '{"order_id": "A-1001", "amount": 25}')
        answer = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"question": REFUND_QUESTION,
                       "ticket": "Order A-1001 arrived broken, I want my 25 EUR back."},
            "user": "ann", "response_mode": "blocking"})
        assert answer.status_code == 200, answer.text
        validate("WorkflowBlockingResponse", answer.json())
        assert answer.json()["data"]["status"] == "succeeded", answer.text
        return dict(answer.json()["data"]["outputs"])

    refund_prompt = f"Order A-1001 wants 25 EUR back: {REFUND_QUESTION}"
    async with served(node.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        outputs = await refund(http, key)
        assert outputs == {"reply": f"Echo: {refund_prompt}", "order": "A-1001", "amount": 25,
                           "sources": [f"[1] policies: {REFUND_FACT[:24]}",
                                       f"[2] policies: {LUNCH_FACT[:24]}"]}
        classified, extracted, answered = (r.body for r in provider.chat_requests[-3:])
        assert REFUND_QUESTION in classified["messages"][-1]["content"]
        assert "Orders of the web shop" in extracted["messages"][0]["content"]
        assert extracted["messages"][-1]["content"] == \
            "Order A-1001 arrived broken, I want my 25 EUR back."
        assert answered["messages"] == [
            {"role": "system", "content": "You answer refund requests. Policy:\n"
                                          f"{REFUND_FACT}\n{LUNCH_FACT}"},
            {"role": "user", "content": refund_prompt}]

        # anything else: the jinja2 prompt, its tokens streamed
        provider.script_chat('{"category_id": "other", "category_name": "Anything else"}')
        streamed = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"question": "when is lasagna served?", "ticket": ""}, "user": "ann",
            "response_mode": "streaming"})
        events = [e for _, e in sse_events(streamed.content)]
        check_workflow_events(events)
        reply = "Echo: Question: WHEN IS LASAGNA SERVED?"
        assert provider.chat_requests[-1].body["messages"] == [
            {"role": "user", "content": "Question: WHEN IS LASAGNA SERVED?"}]
        assert "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk") == reply
        finished = {e["data"]["node_id"]: e["data"] for e in events
                    if e["event"] == "node_finished"}
        assert finished["triage"]["outputs"]["class_name"] == "Anything else"
        assert "details" not in finished and "reply" not in finished
        assert events[-1]["data"]["outputs"]["reply"] == reply

        # the export keeps the edits: imported again, it runs the same
        copy = await import_and_publish(node, auth, await export(node, auth, app_id))
        assert await refund(http, await service_key(node, auth, copy)) == outputs


# -- tea concierge: an advanced-chat app and its conversation variables -----------------------


def stream_events(response: Any) -> list[dict[str, Any]]:
    """The events of a streamed answer the SDK returned (a requests response)."""
    return [json.loads(line[len(b"data: "):]) for line in response.iter_lines()
            if line.startswith(b"data: ")]


async def test_tea_concierge_chats_through_dify_client_keeping_its_variables(
        node: Node, workspace: dict[str, str], provider: FakeOpenAIServer) -> None:
    auth = workspace
    text = (WORKFLOWS / "tea_concierge_advanced_chat.yml").read_text()
    app_id = await import_dsl(node, auth, text)
    await edit_and_publish(node, auth, app_id, on_this_workspace(""))
    key = await service_key(node, auth, app_id)
    async with served(node.app) as url:
        client = ChatClient(key["Authorization"].removeprefix("Bearer "))
        client.base_url = f"{url}/v1"
        first = await asyncio.to_thread(client.create_chat_message, {}, "green tea?", "ann")
        assert first.status_code == 200, first.text
        validate("ChatCompletionResponse", first.json())
        assert (first.json()["answer"], first.json()["mode"]) == (
            "Echo: green tea? (visit 1)", "advanced-chat")
        assert provider.chat_requests[-1].body["messages"] == [
            {"role": "system", "content": "You are a tea concierge. Last question: none yet"},
            {"role": "user", "content": "green tea?"}]
        conversation = first.json()["conversation_id"]

        async def answered(count: int) -> bool:
            listed = await asyncio.to_thread(client.get_conversation_messages, "ann",
                                             conversation)
            return len(listed.json()["data"]) == count
        await eventually(lambda: answered(1))  # the turn is in the conversation's history

        second = await asyncio.to_thread(
            client.create_chat_message, {}, "oolong?", "ann", response_mode="streaming",
            conversation_id=conversation)
        events = await asyncio.to_thread(stream_events, second)
    for event in events:
        validate(chat_event_schema(event["event"]), event)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "workflow_started"
    assert kinds[-2:] == ["workflow_finished", "message_end"], kinds
    assert "".join(e["answer"] for e in events if e["event"] == "message") == \
        "Echo: oolong? (visit 2)"
    # the model got the turn before as memory, the question before in the system prompt
    assert provider.chat_requests[-1].body["messages"] == [
        {"role": "system", "content": "You are a tea concierge. Last question: green tea?"},
        {"role": "user", "content": "green tea?"},
        {"role": "assistant", "content": "Echo: green tea? (visit 1)"},
        {"role": "user", "content": "oolong?"}]
    variables = await node.client.get(f"/v1/conversations/{conversation}/variables",
                                      headers=key, params={"user": "ann"})
    validate("ConversationVariablesResponse", variables.json())
    # as the spec has them: each value a string, JSON for a number or an array
    assert {v["name"]: (v["value_type"], v["value"]) for v in variables.json()["data"]} == {
        "visits": ("number", "2"), "topics": ("array[string]", '["green tea?", "oolong?"]'),
        "last_question": ("string", "oolong?")}

    # exported and imported again: a new conversation starts from the declared values
    copy = await service_key(node, auth, await import_and_publish(
        node, auth, await export(node, auth, app_id)))
    again = await node.client.post("/v1/chat-messages", headers=copy, json={
        "inputs": {}, "query": "green tea?", "user": "ann", "response_mode": "blocking"})
    assert again.status_code == 200, again.text
    assert again.json()["answer"] == "Echo: green tea? (visit 1)"


# -- expense approval: human input --------------------------------------------------------------


async def test_expense_approval_pauses_for_a_manager_and_resumes_on_the_chosen_branch(
        node: Node) -> None:
    auth = await node.setup_and_login()
    text = (WORKFLOWS / "expense_approval_workflow.yml").read_text()
    key = await service_key(node, auth, await import_and_publish(node, auth, text))

    async def paused(amount: int, reason: str, mode: str) -> tuple[str, str]:
        """A run up to its pause: (its id, its form's token)."""
        answer = await node.client.post("/v1/workflows/run", headers=key, json={
            "inputs": {"amount": amount, "reason": reason}, "user": "ann",
            "response_mode": mode})
        assert answer.status_code == 200, answer.text
        if mode == "blocking":
            validate("WorkflowBlockingResponse", answer.json())
            assert answer.json()["data"]["status"] == "paused"
            run_id = answer.json()["workflow_run_id"]
            events = [e for _, e in sse_events((await node.client.get(
                f"/v1/workflow/{run_id}/events", headers=key,
                params={"user": "ann"})).content)]
        else:
            events = [e for _, e in sse_events(answer.content)]
        check_workflow_events(events)
        assert [e["event"] for e in events][-2:] == ["human_input_required", "workflow_paused"]
        return events[0]["workflow_run_id"], events[-2]["data"]["form_token"]

    async def finished(run_id: str) -> dict[str, Any]:
        """The run's events once it ended, across its pause."""
        async def ended() -> list[dict[str, Any]] | None:
            events = [e for _, e in sse_events((await node.client.get(
                f"/v1/workflow/{run_id}/events", headers=key,
                params={"user": "ann", "continue_on_pause": "true"})).content)]
            return events if events and events[-1]["event"] == "workflow_finished" else None
        events = await eventually(ended)
        check_workflow_events(events)
        return dict(events[-1]["data"])

    run_id, token = await paused(120, "team lunch", "streaming")
    form = await node.client.get(f"/v1/form/human_input/{token}", headers=key)
    assert form.status_code == 200, form.text
    assert form.json()["form_content"] == \
        "Approve 120 EUR for team lunch?\n{{#$outputs.note#}}"
    assert [a["id"] for a in form.json()["user_actions"]] == ["approve", "reject"]
    submitted = await node.client.post(f"/v1/form/human_input/{token}", headers=key, json={
        "inputs": {"note": "once a year"}, "action": "approve", "user": "boss"})
    assert submitted.status_code == 200, submitted.text
    done = await finished(run_id)
    assert (done["status"], done["outputs"]) == ("succeeded", {
        "result": "Booked 120 EUR (once a year)", "action": "approve"})

    run_id, token = await paused(9000, "a new car", "blocking")
    submitted = await node.client.post(f"/v1/form/human_input/{token}", headers=key, json={
        "inputs": {"note": "no"}, "action": "reject", "user": "boss"})
    assert submitted.status_code == 200, submitted.text
    done = await finished(run_id)
    assert done["outputs"] == {"note": "no", "action": "reject"}
