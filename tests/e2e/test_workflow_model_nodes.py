"""The model-calling workflow nodes (llm, question-classifier, parameter-extractor,
knowledge-retrieval) executed against a running node's read models (the workspace's model
credentials, indexed datasets, conversations in the event store) and the fake
OpenAI-protocol server: what each sends to the model and what it outputs."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select

from projections.platform.tables import workspaces
from tests.chat import KEY, MODEL, PROVIDERS, Chat, app_with_key, connect_provider, sse_events
from tests.e2e.test_knowledge import FACTS, create_dataset, create_text_document, wait_indexed
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.harness import Node, eventually, served
from tests.workflows import (
    check_workflow_events,
    edge,
    end_outputs,
    graph,
    graph_node,
    publish,
    publish_in_console,
    text_input,
)
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult, RunInfo
from workers.workflow.services import WorkflowServices, workflow_services
from workflow_graph.graph import Graph
from workflow_graph.graph import Node as GraphNode
from workflow_graph.variables import VariablePool

TOOLS_MODEL = "qwen-tools"  # saved with tool calls and structured output supported
COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"
LIGHTHOUSE, QUESTION = FACTS[0]


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY, models={MODEL, TOOLS_MODEL, "rerank-1"}) as fake:
        yield fake


@dataclass
class Workspace:
    node: Node
    auth: dict[str, str]
    tenant_id: UUID
    services: WorkflowServices
    provider: FakeOpenAIServer
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def call(self, node_type: str, data: Mapping[str, Any],
             values: Mapping[str, Mapping[str, Any]] | None = None,
             conversation_id: UUID | None = None, message_id: UUID | None = None) -> NodeCall:
        node = GraphNode("n1", node_type, node_type, {"type": node_type, **data})

        async def emit(event: str, payload: Mapping[str, Any]) -> None:
            self.emitted.append((event, dict(payload)))

        return NodeCall(
            node=node, graph=Graph((node,), ()),
            pool=VariablePool({"sys": {}, "env": {}, "conversation": {}, **(values or {})}),
            run=RunInfo(run_id=uuid.uuid4(), task_id=uuid.uuid4(), app_id=uuid.uuid4(),
                        tenant_id=self.tenant_id, workflow_id=uuid.uuid4(),
                        mode="advanced-chat" if conversation_id else "workflow",
                        user="ann", end_user_id=None, conversation_id=conversation_id,
                        message_id=message_id),
            services=self.services, idempotency_key="k", emit=emit, executors=EXECUTORS)

    async def run(self, node_type: str, data: Mapping[str, Any],
                  values: Mapping[str, Mapping[str, Any]] | None = None,
                  **run: Any) -> NodeResult:
        return await EXECUTORS[node_type](self.call(node_type, data, values, **run))

    def sent(self) -> dict[str, Any]:
        """The last chat request's body."""
        body: dict[str, Any] = self.provider.chat_requests[-1].body
        return body


@pytest.fixture
async def ws(node: Node, provider: FakeOpenAIServer) -> AsyncIterator[Workspace]:
    provider.reset()
    auth = await node.setup_and_login()
    await connect_provider(node, auth, provider)
    saved = await node.client.post(f"{PROVIDERS}/openai_api_compatible/models", headers=auth,
                                   json={"model": TOOLS_MODEL, "model_type": "llm",
                                         "credentials": {
                                             "api_key": KEY, "endpoint_url": provider.base_url,
                                             "function_calling_type": "tool_call",
                                             "structured_output_support": "supported"}})
    assert saved.status_code == 200, saved.text
    c = node.container
    async with c.engine.connect() as conn:
        tenant_id = (await conn.execute(select(workspaces.c.id))).scalar_one()
    services = workflow_services(
        settings=c.settings, engine=c.engine, read_models=c.read_models, kv=c.kv,
        storage=c.storage, store=c.store, embedding_models=c.embedding_models,
        vectors=c.vectors, keywords=c.keywords)
    provider.reset()
    yield Workspace(node, auth, tenant_id, services, provider)
    await services.llm_clients.aclose()


def llm(template: Any, model: str = MODEL, **data: Any) -> dict[str, Any]:
    return {"model": {"provider": "openai_api_compatible", "name": model, "mode": "chat",
                      "completion_params": {"temperature": 0.2}},
            "prompt_template": template, "context": {"enabled": False}, **data}


# -- llm --------------------------------------------------------------------------------------

async def test_llm_renders_the_template_with_context_and_streams_its_tokens(
        ws: Workspace) -> None:
    ws.provider.script_chat(ScriptedChat("Go to the Louvre early.",
                                         usage={"prompt_tokens": 30, "completion_tokens": 5,
                                                "total_tokens": 35}))
    result = await ws.run("llm", llm(
        [{"role": "system", "text": "You guide visitors of {{#start.city#}}.\n{{#context#}}"},
         {"role": "user", "text": "{{#start.question#}}"}],
        context={"enabled": True, "variable_selector": ["kr", "result"]}), {
        "start": {"city": "Paris", "question": "What to see first?"},
        "kr": {"result": [{"content": "The Louvre opens at 9.", "title": "a", "metadata": {}},
                          {"content": "Queues are short before 10.", "title": "b",
                           "metadata": {}}]}})
    assert ws.sent()["messages"] == [
        {"role": "system", "content": "You guide visitors of Paris.\nThe Louvre opens at 9."
                                      "\nQueues are short before 10."},
        {"role": "user", "content": "What to see first?"}]
    assert ws.sent()["temperature"] == 0.2 and ws.sent()["stream"] is True
    assert result.outputs["text"] == "Go to the Louvre early."
    assert result.outputs["finish_reason"] == "stop"
    assert result.outputs["usage"]["prompt_tokens"] == 30
    assert result.outputs["usage"]["total_tokens"] == 35 and result.usage is not None
    chunks = [payload for event, payload in ws.emitted if event == "text_chunk"]
    assert len(chunks) == 5
    assert "".join(c["text"] for c in chunks) == "Go to the Louvre early."
    assert all(c["from_variable_selector"] == ["n1", "text"] for c in chunks)


async def test_llm_jinja2_prompt_is_rendered_in_a_sandbox(ws: Workspace) -> None:
    data = llm([{"role": "user", "edition_type": "jinja2", "text": "unused",
                 "jinja2_text": "Sights: {% for s in sights %}{{ s | upper }} {% endfor %}"}],
               prompt_config={"jinja2_variables": [
                   {"variable": "sights", "value_selector": ["start", "sights"]}]})
    result = await ws.run("llm", data, {"start": {"sights": ["tower", "arch"]}})
    assert ws.sent()["messages"] == [{"role": "user", "content": "Sights: TOWER ARCH "}]
    assert result.outputs["text"] == "Echo: Sights: TOWER ARCH "

    escape = llm([{"role": "user", "edition_type": "jinja2",
                   "jinja2_text": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}])
    calls = ws.provider.calls("/chat/completions")
    with pytest.raises(NodeError) as failed:
        await ws.run("llm", escape)
    assert failed.value.error_type == "TemplateRenderError"
    assert ws.provider.calls("/chat/completions") == calls  # the model is never asked


@pytest.mark.settings(CODE_EXECUTION_TIMEOUT=2)
async def test_a_runaway_jinja2_prompt_fails_its_node_in_the_sandbox(ws: Workspace) -> None:
    endless = llm([{"role": "user", "edition_type": "jinja2", "jinja2_text": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}"
        "{% endfor %}")}])
    with pytest.raises(NodeError) as failed:
        await ws.run("llm", endless)
    assert failed.value.error_type == "TemplateRenderError"
    assert ws.provider.calls("/chat/completions") == 0
    # the worker is fine: the next prompt renders
    await ws.run("llm", llm([{"role": "user", "edition_type": "jinja2",
                              "jinja2_text": "{{ 6 * 7 }}"}]))
    assert ws.sent()["messages"] == [{"role": "user", "content": "42"}]


async def test_llm_completion_prompt_is_one_text(ws: Workspace) -> None:
    data = llm({"text": "Summarise: {{#start.text#}}"})
    data["model"]["mode"] = "completion"
    await ws.run("llm", data, {"start": {"text": "a long day"}})
    assert ws.sent()["messages"] == [{"role": "user", "content": "Summarise: a long day"}]

    ws.provider.script_chat("<think>short is best</think>\nA day.")
    separated = await ws.run("llm", {**data, "reasoning_format": "separated"},
                             {"start": {"text": "a long day"}})
    assert separated.outputs["text"] == "A day."
    assert separated.outputs["reasoning_content"] == "short is best"

    with pytest.raises(NodeError) as failed:
        await ws.run("llm", llm([{"role": "user", "text": "{{#start.nothing#}}"}]),
                     {"start": {"nothing": ""}})
    assert failed.value.error_type == "NoPromptFoundError"


async def test_llm_memory_is_the_conversations_latest_turns_then_the_query(
        ws: Workspace) -> None:
    app_id, key = await app_with_key(ws.node, ws.auth)
    chat = Chat(ws.node, ws.auth, app_id, key, ws.provider)
    await chat.configure()
    first = (await chat.send("Where is the tower?")).json()
    conversation = first["conversation_id"]
    await chat.send("How tall is it?", conversation_id=conversation)
    await chat.send("Who built it?", conversation_id=conversation)

    memory = {"window": {"enabled": True, "size": 2},
              "query_prompt_template": "Question: {{#sys.query#}}"}
    await ws.run("llm", llm([{"role": "system", "text": "Be brief."}], memory=memory),
                 {"sys": {"query": "When was it built?"}}, conversation_id=UUID(conversation))
    assert ws.sent()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How tall is it?"},
        {"role": "assistant", "content": "Echo: How tall is it?"},
        {"role": "user", "content": "Who built it?"},
        {"role": "assistant", "content": "Echo: Who built it?"},
        {"role": "user", "content": "Question: When was it built?"}]

    # the run's own message is the question, not memory; no window: every earlier turn
    messages = (await chat.node.client.get("/v1/messages", headers=key, params={
        "user": "ann", "conversation_id": conversation})).json()["data"]
    third = next(m["id"] for m in messages if m["query"] == "Who built it?")
    await ws.run("llm", llm([], memory={"window": {"enabled": False}}),
                 {"sys": {"query": "Who built it?"}}, conversation_id=UUID(conversation),
                 message_id=UUID(third))
    assert [m["content"] for m in ws.sent()["messages"]] == [
        "Where is the tower?", "Echo: Where is the tower?", "How tall is it?",
        "Echo: How tall is it?", "Who built it?"]

    # a completion prompt takes the turns as text where it says #histories#
    completion = llm({"text": "Chat so far:\n#histories#\nNow: #sys.query#"},
                     memory={"window": {"enabled": True, "size": 1},
                             "role_prefix": {"user": "Visitor", "assistant": "Guide"}})
    completion["model"]["mode"] = "completion"
    await ws.run("llm", completion, {"sys": {"query": "Is it open?"}},
                 conversation_id=UUID(conversation))
    assert ws.sent()["messages"] == [{"role": "user", "content": (
        "Chat so far:\nVisitor: Who built it?\nGuide: Echo: Who built it?\n"
        "Now: Is it open?")}]

    # the classifier reads the turns too
    await ws.run("question-classifier", {**CLASSES, "memory": {"window": {
        "enabled": True, "size": 1}}}, {"sys": {"query": "And the price?"}},
        conversation_id=UUID(conversation))
    assert "Human: Who built it?\nAssistant: Echo: Who built it?" in \
        ws.sent()["messages"][0]["content"]


async def test_llm_vision_sends_the_selected_images(ws: Workspace) -> None:
    await ws.services.storage.save("upload/cat.png", b"\x89PNG-cat")
    files = [{"type": "image", "transfer_method": "remote_url", "mime_type": "image/png",
              "url": "https://img.example/dog.png"},
             {"type": "image", "transfer_method": "local_file", "mime_type": "image/png",
              "key": "upload/cat.png"},
             {"type": "document", "transfer_method": "remote_url", "mime_type": "text/plain",
              "url": "https://img.example/notes.txt"}]
    await ws.run("llm", llm([{"role": "user", "text": "What animals?"}],
                            vision={"enabled": True, "configs": {
                                "variable_selector": ["start", "photos"], "detail": "low"}}),
                 {"start": {"photos": files}})
    dog, cat = (
        {"type": "image_url", "image_url": {"url": "https://img.example/dog.png",
                                            "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORy1jYXQ=",
                                            "detail": "low"}})
    assert ws.sent()["messages"] == [{"role": "user", "content": [
        dog, cat, {"type": "text", "text": "What animals?"}]}]

    # a prompt ending with the assistant: the images are the user's message of their own
    await ws.run("llm", llm([{"role": "system", "text": "Look."},
                             {"role": "assistant", "text": "Show me."}],
                            vision={"enabled": True}), {"sys": {"files": files[:1]}})
    assert ws.sent()["messages"][1:] == [{"role": "assistant", "content": "Show me."},
                                         {"role": "user", "content": [
                                             {**dog, "image_url": {**dog["image_url"],
                                                                   "detail": "high"}}]}]


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                           "days": {"type": "integer"}},
          "required": ["city", "days"]}


async def test_llm_structured_output(ws: Workspace) -> None:
    # a model with JSON-schema answers is asked for one
    ws.provider.script_chat('{"city": "Rome", "days": 3}')
    result = await ws.run("llm", llm([{"role": "user", "text": "Plan Rome, 3 days"}],
                                     model=TOOLS_MODEL, structured_output_enabled=True,
                                     structured_output={"schema": SCHEMA}))
    assert ws.sent()["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "structured_output", "schema": SCHEMA}}
    assert result.outputs["structured_output"] == {"city": "Rome", "days": 3}

    # Dify's completion_params name the format; the protocol takes an object
    named = llm([{"role": "user", "text": "Plan"}])
    named["model"]["completion_params"] = {"response_format": "json_object", "stop": []}
    await ws.run("llm", named)
    assert ws.sent()["response_format"] == {"type": "json_object"}
    assert "stop" not in ws.sent()

    # one without: the schema goes into the prompt, the JSON is read out of the answer
    ws.provider.script_chat('Here it is:\n```json\n{"city": "Oslo", "days": 2}\n```')
    result = await ws.run("llm", llm([{"role": "user", "text": "Plan Oslo"}],
                                     structured_output_enabled=True,
                                     structured_output={"schema": json.dumps(SCHEMA)}))
    sent = ws.sent()
    assert "response_format" not in sent
    assert sent["messages"][0]["role"] == "system"
    assert json.dumps(SCHEMA) in sent["messages"][0]["content"]
    assert result.outputs["structured_output"] == {"city": "Oslo", "days": 2}

    ws.provider.script_chat("Sorry, no JSON today.")
    with pytest.raises(NodeError, match="Failed to parse structured output"):
        await ws.run("llm", llm([{"role": "user", "text": "Plan"}],
                                structured_output_enabled=True,
                                structured_output={"schema": SCHEMA}))


async def test_llm_with_a_model_the_workspace_lacks_fails_with_dify_message(
        ws: Workspace) -> None:
    with pytest.raises(NodeError) as failed:
        await ws.run("llm", llm([{"role": "user", "text": "hi"}], model="gpt-unknown"))
    assert failed.value.error_type == "ProviderNotInitializeError"
    assert failed.value.message == (f"Model gpt-unknown (llm) of provider {COMPATIBLE} is "
                                    "not configured in this workspace.")
    ws.provider.fail_next(1, status=401)
    with pytest.raises(NodeError) as failed:
        await ws.run("llm", llm([{"role": "user", "text": "hi"}]))
    assert failed.value.error_type == "ProviderAuthError"


# -- question-classifier ----------------------------------------------------------------------

CLASSES = {"classes": [{"id": "1", "name": "Refunds"}, {"id": "2", "name": "Shipping"}],
           "query_variable_selector": ["sys", "query"],
           "model": {"provider": "openai_api_compatible", "name": MODEL, "mode": "chat"}}


async def test_question_classifier_takes_the_chosen_class_branch(ws: Workspace) -> None:
    ws.provider.script_chat('```json\n{"keywords": ["parcel"], "category_id": "2", '
                            '"category_name": "Shipping"}\n```')
    result = await ws.run("question-classifier",
                          {**CLASSES, "instruction": "Customers of {{#start.shop#}}"},
                          {"sys": {"query": "Where is my parcel?"}, "start": {"shop": "Acme"}})
    assert result.handle == "2"
    assert result.outputs["class_name"] == "Shipping" and result.outputs["class_id"] == "2"
    assert result.outputs["usage"]["total_tokens"] > 0
    question = json.loads(ws.sent()["messages"][-1]["content"])
    assert question == {"input_text": "Where is my parcel?", "categories": [
        {"category_id": "1", "category_name": "Refunds"},
        {"category_id": "2", "category_name": "Shipping"}],
        "classification_instructions": "Customers of Acme"}

    # an answer naming no class: the first class, as in Dify
    ws.provider.script_chat("I cannot tell.")
    result = await ws.run("question-classifier", CLASSES, {"sys": {"query": "Hello"}})
    assert (result.handle, result.outputs["class_name"]) == ("1", "Refunds")


# -- parameter-extractor ----------------------------------------------------------------------

PARAMETERS = [
    {"name": "city", "type": "string", "description": "destination", "required": True},
    {"name": "nights", "type": "number", "description": "how many nights", "required": True},
    {"name": "breakfast", "type": "bool", "description": "wants breakfast"},
    {"name": "room", "type": "select", "options": ["single", "double"]},
    {"name": "extras", "type": "array[string]"},
]


def extractor(model: str = MODEL, mode: str = "prompt") -> dict[str, Any]:
    return {"model": {"provider": "openai_api_compatible", "name": model, "mode": "chat"},
            "query": ["start", "text"], "parameters": PARAMETERS, "reasoning_mode": mode,
            "instruction": "Booking requests for {{#start.hotel#}}"}


async def test_parameter_extractor_reads_json_from_the_prompt_answer(ws: Workspace) -> None:
    values = {"start": {"text": "Two nights in Lisbon, double room with breakfast",
                        "hotel": "Hotel Sol"}}
    ws.provider.script_chat('{"city": "Lisbon", "nights": "2", "breakfast": true, '
                            '"room": "double", "extras": ["late checkout"]}')
    result = await ws.run("parameter-extractor", extractor(), values)
    sent = ws.sent()
    assert "tools" not in sent
    assert "Booking requests for Hotel Sol" in sent["messages"][0]["content"]
    assert '"enum": ["single", "double"]' in sent["messages"][0]["content"]
    assert sent["messages"][1] == {"role": "user", "content": values["start"]["text"]}
    outputs = dict(result.outputs)
    usage = outputs.pop("__usage")
    assert usage["total_tokens"] > 0
    # "2" is not a number: reported, yet converted to the parameter's type
    assert outputs == {"__is_success": 0, "__reason": "Invalid `number` value for parameter "
                       "nights", "city": "Lisbon", "nights": 2, "breakfast": True,
                       "room": "double", "extras": ["late checkout"]}

    ws.provider.script_chat('{"city": "Porto", "nights": 3.5, "breakfast": false, '
                            '"room": "single", "extras": []}')
    result = await ws.run("parameter-extractor", extractor(), values)
    assert {k: v for k, v in result.outputs.items() if k != "__usage"} == {
        "__is_success": 1, "__reason": None, "city": "Porto", "nights": 3.5,
        "breakfast": False, "room": "single", "extras": []}

    # as in Dify, every parameter must be answered, and a select within its options
    for answer, reason in (
            ('{"city": "Porto", "nights": 3}', "Invalid number of parameters"),
            ('{"nights": 3, "breakfast": false, "room": "single", "extras": [], "x": 1}',
             "Parameter city is required"),
            ('{"city": "Porto", "nights": 3, "breakfast": false, "room": "suite", '
             '"extras": []}', "Invalid `select` value for parameter room"),
            ('{"city": "Porto", "nights": 3, "breakfast": false, "room": "single", '
             '"extras": [1]}', "Invalid `array[string]` value for parameter extras"),
            ("No booking here.", "Failed to extract result from function call or text "
                                 "response, using empty result.")):
        ws.provider.script_chat(answer)
        result = await ws.run("parameter-extractor", extractor(), values)
        assert (result.outputs["__is_success"], result.outputs["__reason"]) == (0, reason)
    # values are still given, each of its parameter's type
    assert {k: result.outputs[k] for k in ("city", "nights", "breakfast", "room",
                                           "extras")} == {
        "city": "", "nights": 0, "breakfast": False, "room": "", "extras": []}


async def test_parameter_extractor_function_call_mode_uses_a_forced_tool(
        ws: Workspace) -> None:
    ws.provider.script_chat(ScriptedChat(tool_calls=[{
        "name": "extract_parameters", "arguments": json.dumps(
            {"city": "Riga", "nights": 1, "breakfast": True, "room": "single",
             "extras": []})}]))
    photo = {"type": "image", "transfer_method": "remote_url", "mime_type": "image/png",
             "url": "https://img.example/booking.png"}
    result = await ws.run("parameter-extractor", {
        **extractor(TOOLS_MODEL, "function_call"), "vision": {"enabled": True}},
        {"start": {"text": "One night in Riga, single", "hotel": "H"}, "sys": {"files": [photo]}})
    sent = ws.sent()
    assert [m["role"] for m in sent["messages"]] == [
        "system", "user", "assistant", "tool", "assistant", "user"]  # a worked example first
    assert sent["messages"][-1] == {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": photo["url"], "detail": "high"}},
        {"type": "text", "text": "One night in Riga, single"}]}
    assert sent["tool_choice"] == {"type": "function",
                                   "function": {"name": "extract_parameters"}}
    schema = sent["tools"][0]["function"]["parameters"]
    assert schema["required"] == ["city", "nights"]
    assert schema["properties"]["extras"] == {"type": "array", "items": {"type": "string"},
                                              "description": ""}
    assert result.outputs["__is_success"] == 1
    assert (result.outputs["city"], result.outputs["nights"], result.outputs["room"]) == (
        "Riga", 1, "single")

    # the model answers in text instead of calling: its JSON is read
    ws.provider.script_chat('Sure: {"city": "Riga", "nights": 2}')
    result = await ws.run("parameter-extractor", extractor(TOOLS_MODEL, "function_call"),
                          {"start": {"text": "Two nights in Riga", "hotel": "H"}})
    assert (result.outputs["city"], result.outputs["nights"]) == ("Riga", 2)
    assert result.outputs["__reason"] == "Invalid number of parameters"

    # the same node on a model without tool calls: asked in the prompt instead
    ws.provider.script_chat('{"city": "Riga", "nights": 1}')
    await ws.run("parameter-extractor", extractor(MODEL, "function_call"),
                 {"start": {"text": "One night in Riga", "hotel": "H"}})
    assert "tools" not in ws.sent()


# -- knowledge-retrieval ----------------------------------------------------------------------

async def indexed(ws: Workspace, name: str, documents: Mapping[str, str]) -> dict[str, Any]:
    """A high-quality dataset holding `documents` (name -> text), indexed; with a
    `category` metadata field set to each document's name."""
    token = (await ws.node.client.post("/console/api/datasets/api-keys",
                                       headers=ws.auth)).json()["token"]
    key = {"Authorization": f"Bearer {token}"}
    dataset = await create_dataset(ws.node, key, name)
    base = f"/v1/datasets/{dataset['id']}"
    field_ = (await ws.node.client.post(f"{base}/metadata", headers=key, json={
        "type": "string", "name": "category"})).json()
    operations = []
    for doc_name, text in documents.items():
        created = await create_text_document(ws.node, key, dataset["id"], doc_name, text)
        await wait_indexed(ws.node.client, key, dataset["id"], created["batch"])
        operations.append({"document_id": created["document"]["id"], "metadata_list": [
            {"id": field_["id"], "name": "category", "value": doc_name}]})
    if operations:
        r = await ws.node.client.post(f"{base}/documents/metadata", headers=key,
                                      json={"operation_data": operations})
        assert r.status_code == 200, r.text
    return dataset


def retrieval(*dataset_ids: str, **data: Any) -> dict[str, Any]:
    return {"query_variable_selector": ["sys", "query"], "dataset_ids": list(dataset_ids),
            "retrieval_mode": "multiple",
            "multiple_retrieval_config": {"top_k": 3, "reranking_enable": False}, **data}


async def test_knowledge_retrieval_multiple_mode_filters_and_reranks(ws: Workspace) -> None:
    handbook = await indexed(ws, "Handbook", {
        "islands": "\n\n".join(f for f, _ in FACTS[:5]),
        "office": "\n\n".join(f for f, _ in FACTS[5:])})
    query = {"sys": {"query": QUESTION}, "start": {"topic": "office"}}

    result = (await ws.run("knowledge-retrieval", retrieval(handbook["id"]), query)).outputs
    assert len(result["result"]) == 3
    top = result["result"][0]
    assert top["content"] == LIGHTHOUSE and top["title"] == "islands"
    assert top["metadata"]["_source"] == "knowledge"
    assert top["metadata"]["dataset_id"] == handbook["id"]
    assert top["metadata"]["dataset_name"] == "Handbook"
    assert top["metadata"]["document_name"] == "islands"
    assert top["metadata"]["retriever_from"] == "workflow"
    assert top["metadata"]["position"] == 1 and top["metadata"]["score"] > 0
    scores = [r["metadata"]["score"] for r in result["result"]]
    assert scores == sorted(scores, reverse=True)

    # manual metadata filter, its value from a variable: only the office document
    filtered = (await ws.run("knowledge-retrieval", retrieval(
        handbook["id"], metadata_filtering_mode="manual",
        metadata_filtering_conditions={"logical_operator": "and", "conditions": [
            {"name": "category", "comparison_operator": "is",
             "value": "{{#start.topic#}}"}]}), query)).outputs["result"]
    assert filtered and {r["title"] for r in filtered} == {"office"}

    # automatic: the model writes the conditions from the query (unknown fields dropped)
    ws.provider.script_chat(json.dumps({"conditions": [
        {"name": "category", "comparison_operator": "is", "value": "office"},
        {"name": "colour", "comparison_operator": "is", "value": "blue"}]}))
    automatic = await ws.run("knowledge-retrieval", retrieval(
        handbook["id"], metadata_filtering_mode="automatic", metadata_model_config={
            "provider": "openai_api_compatible", "name": MODEL, "mode": "chat"}), query)
    assert {r["title"] for r in automatic.outputs["result"]} == {"office"}
    assert '"category": "string"' in ws.sent()["messages"][0]["content"]
    assert ws.sent()["messages"][1] == {"role": "user", "content": QUESTION}
    assert automatic.usage is not None

    # reranked by the workspace's rerank model: its order and scores
    saved = await ws.node.client.post(f"{PROVIDERS}/openai_api_compatible/models",
                                      headers=ws.auth, json={
                                          "model": "rerank-1", "model_type": "rerank",
                                          "credentials": {"api_key": KEY,
                                                          "endpoint_url": ws.provider.base_url}})
    assert saved.status_code == 200, saved.text
    ws.provider.rerank_scorer = lambda q, doc: 0.9 if "otter" in doc else 0.1
    reranks = ws.provider.calls("/rerank")
    reranked = (await ws.run("knowledge-retrieval", retrieval(
        handbook["id"], multiple_retrieval_config={
            "top_k": 2, "reranking_enable": True, "reranking_mode": "reranking_model",
            "reranking_model": {"provider": COMPATIBLE, "model": "rerank-1"}}),
        query)).outputs["result"]
    assert "otter" in reranked[0]["content"] and reranked[0]["metadata"]["score"] == 0.9
    assert len(reranked) == 2 and ws.provider.calls("/rerank") == reranks + 1

    # the context an llm node reads from the result
    await ws.run("llm", llm([{"role": "system", "text": "{{#context#}}"},
                             {"role": "user", "text": "?"}],
                            context={"enabled": True, "variable_selector": ["kr", "result"]}),
                 {"kr": {"result": reranked}})
    assert ws.sent()["messages"][0]["content"] == "\n".join(r["content"] for r in reranked)


async def test_knowledge_retrieval_single_mode_lets_the_model_pick_the_dataset(
        ws: Workspace) -> None:
    travel = await indexed(ws, "Travel", {"trains": FACTS[8][0]})
    support = await indexed(ws, "Support", {"hours": FACTS[9][0]})
    empty = await indexed(ws, "Empty", {})
    ws.provider.script_chat(ScriptedChat(tool_calls=[{
        "name": support["id"], "arguments": "{}"}]))
    single = {"retrieval_mode": "single", "single_retrieval_config": {"model": {
        "provider": "openai_api_compatible", "name": TOOLS_MODEL, "mode": "chat"}}}
    result = await ws.run("knowledge-retrieval", retrieval(
        travel["id"], empty["id"], str(uuid.uuid4()), support["id"], **single),
        {"sys": {"query": "When can I call the help line?"}})
    # the empty and the unknown dataset are not offered
    tools = {t["function"]["name"]: t["function"]["description"] for t in ws.sent()["tools"]}
    assert tools == {
        travel["id"]: "useful for when you want to answer queries about the Travel",
        support["id"]: "useful for when you want to answer queries about the Support"}
    assert [r["content"] for r in result.outputs["result"]] == [FACTS[9][0]]
    assert result.usage is not None

    # the model picks none: nothing is retrieved
    ws.provider.script_chat("No idea.")
    result = await ws.run("knowledge-retrieval", retrieval(travel["id"], support["id"],
                                                           **single),
                          {"sys": {"query": "Anything?"}})
    assert result.outputs["result"] == []

    with pytest.raises(NodeError, match="Query is required"):
        await ws.run("knowledge-retrieval", retrieval(travel["id"]), {"sys": {"query": ""}})



# -- through the engine -----------------------------------------------------------------------

HELPDESK = graph(
    [graph_node("start", "start", variables=[text_input("question")]),
     graph_node("classify", "question-classifier", **{
         **CLASSES, "query_variable_selector": ["start", "question"]}),
     graph_node("refunds", "llm", **llm([{"role": "user",
                                          "text": "Refund: {{#start.question#}}"}])),
     graph_node("shipping", "llm", **llm([
         {"role": "system", "text": "You track parcels."},
         {"role": "user", "text": "{{#start.question#}}"}])),
     graph_node("end_refunds", "end", outputs=end_outputs(("answer", ["refunds", "text"]))),
     graph_node("end_shipping", "end", outputs=end_outputs(("answer", ["shipping", "text"])))],
    [edge("start", "classify"), edge("classify", "refunds", "1"),
     edge("classify", "shipping", "2"), edge("refunds", "end_refunds"),
     edge("shipping", "end_shipping")])


async def test_a_published_workflow_classifies_then_answers_streaming(ws: Workspace) -> None:
    app_id, key = await app_with_key(ws.node, ws.auth, mode="workflow", name="Helpdesk")
    publish(ws.node, app_id, HELPDESK)
    ws.provider.script_chat('{"category_id": "2", "category_name": "Shipping"}',
                            "Your parcel ships today.")
    async with served(ws.node.app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        streamed = await http.post("/v1/workflows/run", headers=key, json={
            "inputs": {"question": "Where is my parcel?"}, "user": "ann",
            "response_mode": "streaming"})
    events = [e for _, e in sse_events(streamed.content)]
    check_workflow_events(events)
    assert "".join(e["data"]["text"] for e in events if e["event"] == "text_chunk") == \
        "Your parcel ships today."
    finished = {e["data"]["node_id"]: e["data"] for e in events
                if e["event"] == "node_finished"}
    assert finished["classify"]["outputs"]["class_name"] == "Shipping"
    assert "refunds" not in finished
    assert finished["shipping"]["outputs"]["usage"]["total_tokens"] > 0
    assert events[-1]["event"] == "workflow_finished"
    assert events[-1]["data"]["outputs"] == {"answer": "Your parcel ships today."}
    assert ws.sent()["messages"] == [{"role": "system", "content": "You track parcels."},
                                     {"role": "user", "content": "Where is my parcel?"}]


REMEMBERING = graph(
    [graph_node("start", "start", variables=[]),
     graph_node("reply", "llm", **llm([{"role": "system", "text": "Be brief."}],
                                      memory={"window": {"enabled": True, "size": 5}})),
     graph_node("say", "answer", answer="{{#reply.text#}}")],
    [edge("start", "reply"), edge("reply", "say")])


async def test_a_chatflow_llm_remembers_the_conversations_earlier_turns(
        ws: Workspace) -> None:
    app_id, key = await app_with_key(ws.node, ws.auth, mode="advanced-chat", name="Tea bot")
    await publish_in_console(ws.node, ws.auth, app_id, REMEMBERING)

    async def ask_chat(query: str, conversation: str = "") -> dict[str, Any]:
        r = await ws.node.client.post("/v1/chat-messages", headers=key, json={
            "inputs": {}, "query": query, "user": "ann", "response_mode": "blocking",
            "conversation_id": conversation})
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    first = await ask_chat("green tea")
    assert first["answer"] == "Echo: green tea"
    conversation = first["conversation_id"]

    async def answered() -> bool:
        r = await ws.node.client.get("/v1/messages", headers=key, params={
            "user": "ann", "conversation_id": conversation})
        return [m["answer"] for m in r.json()["data"]] == ["Echo: green tea"]
    await eventually(answered)

    second = await ask_chat("oolong", conversation)
    assert second["answer"] == "Echo: oolong"
    assert ws.sent()["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "green tea"},
        {"role": "assistant", "content": "Echo: green tea"},
        {"role": "user", "content": "oolong"}]
