"""Dify's scheduled jobs, each run as `eddy job NAME` runs it, judged by what a user sees:
retention (clean_messages) takes old messages and workflow runs out of the answers and the
model's memory and keeps new ones; the unused-datasets job disables the documents of a
dataset nobody used and leaves a queried one alone; the queue monitor asks for one alert
mail per address per window while the indexing backlog is past its threshold."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import Table, func, select, text, update

from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import ASSEMBLY
from projections.conversation.tables import messages
from projections.knowledge.tables import dataset_queries, datasets, documents
from projections.workflow.runs.tables import workflow_runs
from schemas.mail import events as mail_events
from tests.chat import Chat, app_with_key
from tests.e2e.test_knowledge import (
    create_dataset,
    create_text_document,
    dataset_key,
    wait_indexed,
)
from tests.harness import Node, eventually, node_settings, running_node
from tests.workflow_runs import Step, Workflow, record_run
from workers.scheduler import run_job

OLD = timedelta(days=40)  # past the default 30 days of retention


async def backdate(node: Node, table: Table, row_id: Any, column: str = "created_at") -> None:
    """As if the row had been written 40 days ago (once it is projected)."""
    async def moved() -> bool:
        async with node.container.engine.begin() as conn:
            return bool((await conn.execute(update(table).where(table.c.id == UUID(str(row_id)))
                                            .values({column: func.now() - OLD}))).rowcount)
    await eventually(moved)


async def test_retention_removes_old_messages_and_runs_and_keeps_new_ones(chat: Chat) -> None:
    node = chat.node
    old = (await chat.send("Where is the old town?")).json()
    conversation = old["conversation_id"]
    new = (await chat.send("And the harbour?", conversation_id=conversation)).json()
    await backdate(node, messages, old["message_id"])
    app_id, key = await app_with_key(node, chat.auth, mode="workflow", name="Flow")
    flow = Workflow(node, chat.auth, app_id, key)
    old_run = record_run(node, app_id, steps=(Step("start", "start"),))
    new_run = record_run(node, app_id, steps=(Step("start", "start"),))
    for run in (old_run, new_run):
        await flow.projected(run)
    await backdate(node, workflow_runs, old_run)

    await run_job(node.container, ASSEMBLY.jobs["clean_messages"])

    async def messages_left() -> list[str] | None:
        r = await node.client.get("/v1/messages", headers=chat.key, params={
            "user": "ann", "conversation_id": conversation})
        ids = [m["id"] for m in r.json()["data"]]
        return ids if len(ids) == 1 else None

    assert await eventually(messages_left) == [new["message_id"]]

    async def run_gone() -> bool:
        return (await flow.detail(old_run)).status_code == 404

    await eventually(run_gone)
    assert (await flow.detail(new_run)).status_code == 200
    logs = (await flow.logs()).json()["data"]
    assert [log["workflow_run"]["id"] for log in logs] == [str(new_run)]
    # the model's memory of the conversation no longer holds the expired turn
    chat.provider.reset()
    await chat.send("Anything else?", conversation_id=conversation)
    prompt = str(chat.provider.chat_requests[-1].body["messages"])
    assert "And the harbour?" in prompt and "Where is the old town?" not in prompt
    # a second pass finds nothing more to do
    await run_job(node.container, ASSEMBLY.jobs["clean_messages"])
    r = await node.client.get("/v1/messages", headers=chat.key, params={
        "user": "ann", "conversation_id": conversation})
    assert [m["query"] for m in r.json()["data"]] == ["And the harbour?", "Anything else?"]


async def test_unused_datasets_have_their_documents_disabled(node: Node) -> None:
    key = await dataset_key(node)
    unused = await create_dataset(node, key, "Unused", "economy")
    queried = await create_dataset(node, key, "Queried", "economy")
    ids = {}
    for dataset in (unused, queried):
        created = await create_text_document(node, key, dataset["id"], "hours",
                                             "The harbour opens at nine.")
        await wait_indexed(node.client, key, dataset["id"], created["batch"])
        ids[dataset["id"]] = created["document"]["id"]
        await backdate(node, datasets, dataset["id"])
        await backdate(node, documents, created["document"]["id"], "updated_at")

    def retrieve(dataset: dict[str, Any]) -> Any:
        return node.client.post(f"/v1/datasets/{dataset['id']}/retrieve", headers=key,
                                json={"query": "harbour"})

    assert len((await retrieve(queried)).json()["records"]) == 1

    async def queried_recorded() -> bool:
        async with node.container.engine.connect() as conn:
            return (await conn.execute(select(dataset_queries.c.last_queried_at).where(
                dataset_queries.c.dataset_id == UUID(queried["id"])))).scalar() is not None

    await eventually(queried_recorded)
    await run_job(node.container, ASSEMBLY.jobs["clean_unused_datasets_task"])

    async def enabled(dataset: dict[str, Any]) -> bool:
        r = await node.client.get(f"/v1/datasets/{dataset['id']}/documents", headers=key)
        return bool(r.json()["data"][0]["enabled"])

    async def disabled() -> bool:
        return not await enabled(unused)

    await eventually(disabled)
    assert (await retrieve(unused)).json()["records"] == []  # out of retrieval
    assert await enabled(queried)
    assert len((await retrieve(queried)).json()["records"]) == 1


async def alert_mails(node: Node) -> list[mail_events.MailRequested]:
    return [e.payload for e in node.container.store.read_from(0, 100_000)
            if isinstance(e.payload, mail_events.MailRequested)
            and e.payload.template == "queue_monitor_alert"]


async def test_queue_monitor_sends_one_alert_per_address_per_window(
    postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str,
    tmp_path: Path,
) -> None:
    settings = node_settings(postgres, fresh_database("monitor"), redis_url,
                             ENABLE_DATASETS_QUEUE_MONITOR=True, QUEUE_MONITOR_THRESHOLD=3,
                             QUEUE_MONITOR_ALERT_EMAILS="ops@example.com, oncall@example.com",
                             QUEUE_MONITOR_INTERVAL=60, MAIL_OUTBOX_DIR=tmp_path)
    # no indexing processor runs: what is asked for stays in the backlog
    roles = ["relay", "commands", "projections", "mail.outbox"]
    async with running_node(settings, roles=roles) as node:
        auth = await node.setup_and_login()
        token = (await node.client.post("/console/api/datasets/api-keys", headers=auth)).json()
        key = {"Authorization": f"Bearer {token['token']}"}
        dataset = (await node.client.post("/v1/datasets", headers=key, json={
            "name": "Backlog", "indexing_technique": "high_quality"})).json()
        monitor = ASSEMBLY.jobs["datasets-queue-monitor"]

        async def add_document(name: str) -> None:
            r = await node.client.post(
                f"/v1/datasets/{dataset['id']}/document/create-by-text", headers=key,
                json={"name": name, "text": "Harbour opening hours.",
                      "indexing_technique": "high_quality",
                      "process_rule": {"mode": "automatic"}})
            assert r.status_code == 200, r.text

        async def backlog() -> int:
            async with node.container.engine.connect() as conn:
                return int((await conn.execute(text(
                    "SELECT coalesce(sum(seq), 0) FROM topic_partition_seqs"
                    " WHERE topic LIKE 'indexing.%'"))).scalar() or 0)

        for name in ("one", "two"):
            await add_document(name)
        await eventually(lambda: _at_least(backlog, 2))
        await run_job(node.container, monitor)
        assert await alert_mails(node) == []  # below the threshold
        await add_document("three")
        await eventually(lambda: _at_least(backlog, 3))
        await run_job(node.container, monitor)
        await run_job(node.container, monitor)  # the same window: nothing more
        mails = await alert_mails(node)
        assert sorted(m.to for m in mails) == ["oncall@example.com", "ops@example.com"]
        assert mails[0].params["pending_tasks_count"] == 3 and mails[0].params["threshold"] == 3

        def sent() -> list[EmailMessage]:
            return [message_from_bytes(f.read_bytes(), policy=policy.default)
                    for f in tmp_path.glob("*.eml")]  # type: ignore[misc]

        async def both_sent() -> list[EmailMessage] | None:
            return found if len(found := sent()) == 2 else None

        delivered = await eventually(both_sent)
        assert sorted(m["To"] for m in delivered) == ["oncall@example.com", "ops@example.com"]
        body = delivered[0].get_body(("plain",))
        assert body is not None and "has 3 pending tasks" in body.get_content()


async def _at_least(measure: Callable[[], Any], n: int) -> bool:
    return bool(await measure() >= n)
