"""`eddy vdb-migrate` against real Postgres (pgvector) and Redis: every high_quality dataset's
chunks are written again into the configured vector store from its indexed segments, and
every app's annotation reply index from its annotations, checked through the Service API
(retrieval, chat); an interrupted migration continues where it stopped."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from config import Settings
from tests.chat import MODEL, chat_node
from tests.e2e.test_annotations import HOURS, answer, connect_embeddings, create, in_force, run_job
from tests.e2e.test_knowledge import create_dataset, create_text_document, dataset_key, wait_indexed
from tests.harness import Node, running_node
from tests.integration.test_cli_operations import eddy
from workers.knowledge.indexing import IndexingDeps, collections_of

FACTS = {"trains": ["The night train from Vienna to Venice departs at 21:40.",
                    "Bicycles travel free on regional trains at weekends."],
         "support": ["Customer support answers the phone from 8am to 6pm on weekdays.",
                     "Refunds are paid within fourteen days of the request."]}


async def _found(node: Node, key: dict[str, str], dataset_id: str, query: str) -> list[str]:
    r = await node.client.post(f"/v1/datasets/{dataset_id}/retrieve", headers=key, json={
        "query": query, "retrieval_model": {
            "search_method": "semantic_search", "reranking_enable": False, "top_k": 2,
            "score_threshold_enabled": False}})
    assert r.status_code == 200, r.text
    return [record["segment"]["content"] for record in r.json()["records"]]


async def _empty_vector_store(node: Node, dataset_id: str) -> None:
    """As a newly configured vector store is: none of the dataset's vectors in it."""
    c = node.container
    deps = IndexingDeps(store=c.store, storage=c.storage, embedding_models=c.embedding_models,
                        vectors=c.vectors, keywords=c.keywords)
    for store, collection in (await collections_of(deps, UUID(dataset_id)))[1]:
        if store is c.vectors and not collection.startswith("kw_"):
            await store.delete(collection)


async def test_vdb_migrate_rewrites_every_dataset_and_resumes(settings: Settings) -> None:
    async with running_node(settings) as node:
        key = await dataset_key(node)
        datasets: dict[str, dict[str, Any]] = {}
        for name, facts in FACTS.items():
            datasets[name] = await create_dataset(node, key, name)
            created = await create_text_document(node, key, datasets[name]["id"], name,
                                                 "\n\n".join(facts))
            await wait_indexed(node.client, key, datasets[name]["id"], created["batch"])
        economy = await create_dataset(node, key, "notes", technique="economy")
        trains, support = datasets["trains"]["id"], datasets["support"]["id"]
        assert await _found(node, key, trains, "When does the Venice train leave?")

        for dataset_id in (trains, support):
            await _empty_vector_store(node, dataset_id)
        assert await _found(node, key, trains, "When does the Venice train leave?") == []
        # an earlier run was interrupted after finishing the first dataset
        await node.container.kv.set_field(f"vdb_migrate:{settings.VECTOR_STORE}", trains,
                                          "done")

        code, out, err = await eddy("vdb-migrate", "--scope", "knowledge")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "Starting vector database migration."
        assert f"Processing the 1 dataset {trains}. 0 created, 0 skipped." in lines
        assert f"Processing the 2 dataset {support}. 0 created, 1 skipped." in lines
        assert f"Successfully migrated dataset {support}." in lines
        assert economy["id"] not in out
        assert lines[-1] == "Migration complete. Created 1 dataset indexes. Skipped 1 datasets."
        assert FACTS["support"][1] in await _found(node, key, support, "When are refunds paid?")
        assert await _found(node, key, trains, "When does the Venice train leave?") == []

        # that migration completed: the next one starts over and rewrites every dataset
        code, out, err = await eddy("vdb-migrate")
        assert code == 0, err
        assert ("Migration complete. Created 2 dataset indexes. Skipped 0 datasets."
                in out.splitlines())
        found = await _found(node, key, trains, "When does the Venice train leave?")
        assert found[0] == FACTS["trains"][0] and len(found) == 2


async def test_vdb_migrate_rewrites_annotation_reply_indexes(settings: Settings) -> None:
    async with chat_node(settings, frozenset({MODEL, "bge-m3"})) as chat:
        await connect_embeddings(chat)
        await create(chat, *HOURS)
        assert (await run_job(chat, "enable"))["job_status"] == "completed"
        assert await answer(chat, HOURS[0]) == HOURS[1]
        await chat.node.container.vectors.delete(await in_force(chat))  # a new, empty store
        assert await answer(chat, HOURS[0]) == f"Echo: {HOURS[0]}"  # the model answers

        code, out, err = await eddy("vdb-migrate", "--scope", "annotation")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "Starting annotation data migration."
        assert f"Successfully migrated app annotation {chat.app_id}." in lines
        assert lines[-1] == ("Migration complete. Created 1 app annotation indexes. "
                             "Skipped 0 apps.")
        assert await answer(chat, HOURS[0]) == HOURS[1]
