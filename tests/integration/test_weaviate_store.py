"""The vector store contract against a real Weaviate (REST + gRPC).

Needs a running server, so it only runs when WEAVIATE_ENDPOINT is set, e.g.
    WEAVIATE_ENDPOINT=http://127.0.0.1:8080 [WEAVIATE_GRPC_ENDPOINT=127.0.0.1:50051]
    [WEAVIATE_API_KEY=...] pytest tests/integration/test_weaviate_store.py
Each test uses its own collection and drops it afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import pytest

from adapters.vector.base import VectorDocument
from adapters.vector.weaviate import (
    WeaviateStore,
    _data_object,
    _dimensions,
    _filters,
    class_name,
    object_uuid,
)
from tests.contracts.vector_store import VectorStoreContract

ENDPOINT = os.environ.get("WEAVIATE_ENDPOINT", "")

needs_server = pytest.mark.skipif(
    not ENDPOINT, reason="set WEAVIATE_ENDPOINT to run the Weaviate vector store tests"
)


@needs_server
class TestWeaviateStore(VectorStoreContract):
    @pytest.fixture
    async def store(self, collection: str) -> AsyncIterator[WeaviateStore]:
        store = WeaviateStore(
            ENDPOINT,
            os.environ.get("WEAVIATE_API_KEY") or None,
            grpc_endpoint=os.environ.get("WEAVIATE_GRPC_ENDPOINT") or None,
        )
        try:
            yield store
        finally:
            try:
                await store.delete(collection)  # leave the shared server clean
            finally:
                await store.close()


# -- offline checks: run without a server ----------------------------------------------


def test_names_follow_dify() -> None:
    assert class_name("3f2b-44aa") == "Vector_index_3f2b_44aa_Node"
    for bad in ["", "a b", 'x"y', "../z"]:
        with pytest.raises(ValueError):
            class_name(bad)


def test_object_uuid_is_deterministic() -> None:
    assert object_uuid("seg-1") == object_uuid("seg-1") != object_uuid("seg-2")


def test_dimensions_are_read_from_the_description() -> None:
    # What `create` records; collections made before it have another (or no) description.
    assert _dimensions("eddy:dimensions=384") == 384
    assert _dimensions("eddy:dimensions=0") == 0
    assert _dimensions(None) is None
    assert _dimensions("a collection of chunks") is None


def test_endpoints() -> None:
    # Construction is lazy: nothing connects until the first call.
    store = WeaviateStore("https://w.example:9443", "key")
    assert (store._http_host, store._http_port, store._http_secure) == ("w.example", 9443, True)
    assert (store._grpc_host, store._grpc_port, store._grpc_secure) == ("w.example", 50051, True)
    store = WeaviateStore("http://127.0.0.1:8080", None, grpc_endpoint="127.0.0.1:50052")
    assert (store._grpc_host, store._grpc_port, store._grpc_secure) == ("127.0.0.1", 50052, False)


def test_objects_and_filters() -> None:
    document = VectorDocument(
        id="c1",
        text="hello",
        vector=[1.0, 0.0],
        metadata={
            "dataset_id": "d",
            "document_id": "doc",
            "segment_id": "s",
            "n": 7,
            "ok": True,
            "tags": ["x"],
        },
    )
    obj = _data_object(document)
    assert obj.uuid == object_uuid("c1")
    assert obj.vector == {"default": [1.0, 0.0]}
    assert obj.properties is not None
    assert obj.properties["document_id"] == "doc"
    # Same text forms as pgvector's meta->>key; lists are not filterable scalars.
    assert sorted(obj.properties["meta_pairs"]) == [
        "dataset_id=d",
        "document_id=doc",
        "n=7",
        "ok=true",
        "segment_id=s",
    ]
    assert json.loads(obj.properties["metadata_json"]) == document.metadata
    # BM25 searches `terms`: the text itself, or the words full-text search indexes
    assert obj.properties["terms"] == "hello"
    words = _data_object(VectorDocument(id="c2", text="知识库", vector=None, terms="知识 知识库"))
    assert words.properties is not None and words.properties["terms"] == "知识 知识库"

    assert _filters(None) == (None, False)
    assert _filters({"document_id": []}) == (None, True)
    single, impossible = _filters({"document_id": "doc"})
    assert single is not None and not impossible
    combined, _ = _filters({"document_id": ["a", "b"], "n": 7})
    assert combined is not None
    with pytest.raises(ValueError):
        _filters({"n": None})
