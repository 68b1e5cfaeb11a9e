"""Weaviate store (weaviate-client v4), laid out like Dify's Weaviate vector store.

* One Weaviate collection per Eddy collection, named "Vector_index_<name>_Node" (Weaviate
  class names must start with an uppercase letter; '-' becomes '_', as Dify does for ids).
* Vectors are ours (self-provided, no vectorizer), in a named vector "default" with an
  HNSW index using cosine distance.
* Properties: text, terms (what BM25 searches: the text with CJK cut into words, see
  VectorDocument.terms; word tokenization), chunk_id (our id), dataset_id / document_id /
  segment_id (exact-match filterable), metadata_json (all metadata, returned as is) and
  meta_pairs: "key=value" strings for every scalar metadata value, so any metadata key
  can be filtered exactly like the pgvector store's `meta->>key = value`, without
  auto-schema guessing a property type per key.
* Object UUIDs are uuid5(chunk id), so writing a chunk again overwrites it (upsert).
* Weaviate learns a collection's vector length from its first vector; the length given to
  `create` is kept in the collection's description ("eddy:dimensions=<n>") so that every
  batch is checked against it before it is sent, as in the other stores. Collections
  created before that have no such description: their batches go unchecked for length.

Scores: vector hits are 1 - cosine distance, clamped to [0, 1]; BM25 scores are unbounded
and mapped to [0, 1) with score / (score + 1), the same shape as pgvector's ts_rank_cd
normalisation.

The client is synchronous; every call runs in a worker thread (the sync client's HTTP and
gRPC channels are safe to share between threads).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import weaviate
from weaviate.classes.config import (
    Configure,
    DataType,
    Property,
    Tokenization,
    VectorDistances,
)
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.collections import Collection
from weaviate.collections.classes.data import DataObject
from weaviate.collections.classes.filters import _Filters
from weaviate.exceptions import WeaviateBaseError

from adapters.vector.base import (
    CollectionNotFound,
    MetadataFilter,
    VectorDocument,
    VectorHit,
    checked_vector,
    clamp01,
    filter_terms,
    filter_value,
    upsert_batch,
)

_COLLECTION_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_VECTOR_NAME = "default"
# Fixed namespace: the same chunk id must map to the same object in every process.
_UUID_NAMESPACE = uuid.UUID("8a4f3f0e-5b7e-4c51-9a51-2f6d4c0e7d11")
_ID_FIELDS = ("dataset_id", "document_id", "segment_id")
# Weaviate caps delete_many matches per request (QUERY_MAXIMUM_RESULTS, 10k by default).
_DELETE_BATCH = 1000
_INSERT_BATCH = 500
_RETURN_PROPERTIES = ["chunk_id", "text", "metadata_json"]
_TERMS = "terms"
# Weaviate's word tokenization splits on everything but letters and digits, so the words
# we set apart with spaces (CJK ones included) are its tokens, as in Postgres.
_TERMS_PROPERTY = Property(name=_TERMS, data_type=DataType.TEXT, tokenization=Tokenization.WORD)
_PAGE = 1000  # objects per read when listing a document's chunks
_DIMENSIONS_RE = re.compile(r"eddy:dimensions=(\d+)")

T = TypeVar("T")


class WeaviateStore:
    def __init__(
        self,
        endpoint: str,
        api_key: str | None,
        *,
        grpc_endpoint: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        """`endpoint` is the REST URL (http://host:8080); gRPC (which v4 requires) defaults
        to the same host on port 50051, or `grpc_endpoint` ("host:port", optional scheme)."""
        http = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if not http.hostname:
            raise ValueError(f"invalid Weaviate endpoint {endpoint!r}")
        self._http_host = http.hostname
        self._http_secure = http.scheme == "https"
        self._http_port = http.port or (443 if self._http_secure else 8080)
        if grpc_endpoint:
            grpc = urlsplit(grpc_endpoint if "://" in grpc_endpoint else f"//{grpc_endpoint}")
            self._grpc_host = grpc.hostname or self._http_host
            self._grpc_port = grpc.port or 50051
            self._grpc_secure = grpc.scheme in ("https", "grpcs") or (
                not grpc.scheme and self._http_secure
            )
        else:
            self._grpc_host, self._grpc_port, self._grpc_secure = (
                self._http_host,
                50051,
                self._http_secure,
            )
        self._api_key = api_key or None
        self._timeout = timeout
        self._client: weaviate.WeaviateClient | None = None
        self._lock = threading.Lock()

    async def close(self) -> None:
        # In a thread: the lock may be held by a connect in progress.
        await asyncio.to_thread(self._close)

    # -- VectorStore --------------------------------------------------------------------

    async def create(self, collection: str, dimensions: int) -> None:
        name = class_name(collection)
        if dimensions < 0:
            raise ValueError("dimensions must be >= 0 (0 = keyword-only collection)")
        await asyncio.to_thread(self._create, name, dimensions)

    async def add_texts(self, collection: str, documents: Sequence[VectorDocument]) -> None:
        name = class_name(collection)
        if not documents:
            return

        def insert() -> None:
            client = self._connect()
            # Weaviate's auto-schema would silently create a missing collection with guessed
            # settings (e.g. after the dataset was deleted); fail like pgvector instead.
            if not client.collections.exists(name):
                raise CollectionNotFound(f"vector collection {collection!r} does not exist")
            target = client.collections.get(name)
            dimensions = _dimensions(target.config.get().description)
            objects = [_data_object(doc)
                       for doc in upsert_batch(collection, documents, dimensions)]
            for start in range(0, len(objects), _INSERT_BATCH):
                result = target.data.insert_many(objects[start : start + _INSERT_BATCH])
                if result.has_errors:
                    first = next(iter(result.errors.values()))
                    raise RuntimeError(
                        f"Weaviate rejected {len(result.errors)} object(s) in {name}: "
                        f"{first.message}"
                    )

        await asyncio.to_thread(insert)

    async def delete_by_ids(self, collection: str, ids: Sequence[str]) -> None:
        name = class_name(collection)
        uuids = [object_uuid(i) for i in dict.fromkeys(ids)]
        if not uuids:
            return

        def delete() -> None:
            target = self._collection(name)
            for start in range(0, len(uuids), _DELETE_BATCH):
                batch = uuids[start : start + _DELETE_BATCH]
                target.data.delete_many(where=Filter.by_id().contains_any(batch))

        await self._run_if_exists(name, delete, None)

    async def delete_by_document_id(self, collection: str, document_id: str,
                                    before_attempt: int | None = None) -> None:
        name = class_name(collection)
        if before_attempt is not None:
            # Attempts live in the metadata JSON: pick the older ones' chunk ids, delete those.
            def older() -> list[str]:
                where = Filter.by_property("document_id").equal(document_id)
                target = self._collection(name)
                doomed: list[str] = []
                offset = 0
                while True:
                    page = target.query.fetch_objects(
                        filters=where, limit=_PAGE, offset=offset,
                        return_properties=["chunk_id", "metadata_json"]).objects
                    offset += len(page)
                    doomed += [str(o.properties.get("chunk_id")) for o in page
                               if _attempt(o.properties) < before_attempt]
                    if len(page) < _PAGE:
                        return doomed

            await self.delete_by_ids(collection, await self._run_if_exists(name, older, []))
            return

        def delete() -> None:
            where = Filter.by_property("document_id").equal(document_id)
            target = self._collection(name)
            # delete_many stops at the server's per-request match cap; repeat until done,
            # but never spin if the server keeps failing to delete what it matched.
            while True:
                result = target.data.delete_many(where=where)
                if result.failed:
                    raise RuntimeError(f"Weaviate failed to delete {result.failed} object(s)")
                if result.successful == 0:
                    break

        await self._run_if_exists(name, delete, None)

    async def delete(self, collection: str) -> None:
        name = class_name(collection)
        # Deleting a missing collection is a no-op in Weaviate already.
        await asyncio.to_thread(lambda: self._connect().collections.delete(name))

    async def count(self, collection: str, document_id: str | None = None) -> int:
        name = class_name(collection)

        def count() -> int:
            filters = (
                None
                if document_id is None
                else Filter.by_property("document_id").equal(document_id)
            )
            result = self._collection(name).aggregate.over_all(total_count=True, filters=filters)
            return int(result.total_count or 0)

        return await self._run_if_exists(name, count, 0)

    async def search_by_vector(
        self,
        collection: str,
        vector: Sequence[float],
        top_k: int,
        score_threshold: float = 0.0,
        where: MetadataFilter | None = None,
    ) -> list[VectorHit]:
        name = class_name(collection)
        filters, impossible = _filters(where)
        if top_k <= 0 or impossible:
            return []
        query_vector = checked_vector(vector)

        def search() -> list[VectorHit]:
            result = self._collection(name).query.near_vector(
                near_vector=query_vector,
                target_vector=_VECTOR_NAME,
                limit=top_k,
                filters=filters,
                return_metadata=MetadataQuery(distance=True),
                return_properties=_RETURN_PROPERTIES,
            )
            hits = []
            for obj in result.objects:
                distance = obj.metadata.distance
                score = clamp01(1.0 - float(distance if distance is not None else 1.0))
                if score >= score_threshold:
                    hits.append(_hit(obj.properties, score))
            return hits

        return await self._run_if_exists(name, search, [])

    async def search_by_full_text(
        self,
        collection: str,
        query: str,
        top_k: int,
        where: MetadataFilter | None = None,
    ) -> list[VectorHit]:
        name = class_name(collection)
        filters, impossible = _filters(where)
        if top_k <= 0 or impossible or not query.strip():
            return []

        def search() -> list[VectorHit]:
            result = self._collection(name).query.bm25(
                query=query,
                query_properties=[_TERMS],
                limit=top_k,
                filters=filters,
                return_metadata=MetadataQuery(score=True),
                return_properties=_RETURN_PROPERTIES,
            )
            hits = []
            for obj in result.objects:
                raw = max(float(obj.metadata.score or 0.0), 0.0)
                hits.append(_hit(obj.properties, raw / (raw + 1.0)))
            return hits

        return await self._run_if_exists(name, search, [])

    # -- internals (blocking; run in threads) -------------------------------------------

    def _connect(self) -> weaviate.WeaviateClient:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = weaviate.connect_to_custom(
                    http_host=self._http_host,
                    http_port=self._http_port,
                    http_secure=self._http_secure,
                    grpc_host=self._grpc_host,
                    grpc_port=self._grpc_port,
                    grpc_secure=self._grpc_secure,
                    auth_credentials=Auth.api_key(self._api_key) if self._api_key else None,
                    additional_config=AdditionalConfig(
                        timeout=Timeout(
                            init=min(self._timeout, 30),
                            query=self._timeout,
                            insert=self._timeout * 2,
                        )
                    ),
                )
            return self._client

    def _close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _collection(self, name: str) -> Collection[Any, Any]:
        return self._connect().collections.get(name)

    def _create(self, name: str, dimensions: int) -> None:
        client = self._connect()
        if client.collections.exists(name):
            existing = client.collections.get(name)
            config = existing.config.get()
            known = _dimensions(config.description)
            if known is not None and known != dimensions:
                raise ValueError(
                    f"collection {name!r} exists with {known} dimensions, not {dimensions}")
            # Collections from before `terms` existed: add it (their objects are found by
            # full text again once rewritten, e.g. by a reindex).
            if all(p.name != _TERMS for p in config.properties):
                existing.config.add_property(_TERMS_PROPERTY)
            return
        try:
            client.collections.create(
                name,
                description=f"eddy:dimensions={dimensions}",
                vector_config=Configure.Vectors.self_provided(
                    name=_VECTOR_NAME,
                    vector_index_config=Configure.VectorIndex.hnsw(
                        distance_metric=VectorDistances.COSINE
                    ),
                ),
                properties=[
                    Property(name="text", data_type=DataType.TEXT),
                    _TERMS_PROPERTY,
                    Property(
                        name="chunk_id",
                        data_type=DataType.TEXT,
                        tokenization=Tokenization.FIELD,
                        index_searchable=False,
                    ),
                    # FIELD tokenization: ids must match whole, not word by word ("a-b").
                    *(
                        Property(
                            name=field,
                            data_type=DataType.TEXT,
                            tokenization=Tokenization.FIELD,
                            index_searchable=False,
                        )
                        for field in _ID_FIELDS
                    ),
                    Property(
                        name="meta_pairs",
                        data_type=DataType.TEXT_ARRAY,
                        tokenization=Tokenization.FIELD,
                        index_searchable=False,
                    ),
                    Property(
                        name="metadata_json",
                        data_type=DataType.TEXT,
                        index_filterable=False,
                        index_searchable=False,
                    ),
                ],
            )
        except WeaviateBaseError:
            # Lost a race with another creator: fine if the collection exists now.
            if not client.collections.exists(name):
                raise
            self._create(name, dimensions)  # and then its dimensions must agree

    async def _run_if_exists(self, name: str, work: Callable[[], T], missing: T) -> T:
        """Run `work`; if it fails because the collection is missing, return `missing`.

        Checking existence only after a failure keeps the common path at one round trip.
        """

        def run() -> T:
            try:
                return work()
            except WeaviateBaseError:
                if not self._connect().collections.exists(name):
                    return missing
                raise

        return await asyncio.to_thread(run)


def class_name(collection: str) -> str:
    """Weaviate collection name for an Eddy collection; ValueError for unsafe names."""
    if not isinstance(collection, str) or not _COLLECTION_RE.fullmatch(collection):
        raise ValueError(f"invalid collection name {collection!r}: use [A-Za-z0-9_-]")
    return f"Vector_index_{collection.replace('-', '_')}_Node"


def object_uuid(chunk_id: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, chunk_id))


def _data_object(doc: VectorDocument) -> DataObject[dict[str, Any], None]:
    metadata = dict(doc.metadata)
    properties: dict[str, Any] = {
        "text": doc.text,
        _TERMS: doc.text if doc.terms is None else doc.terms,
        "chunk_id": doc.id,
        "metadata_json": json.dumps(metadata, default=str),
        "meta_pairs": [
            _pair(key, filter_value(value))
            for key, value in metadata.items()
            if isinstance(value, str | bool | int | float)
        ],
    }
    for field in _ID_FIELDS:
        if metadata.get(field) is not None:
            properties[field] = str(metadata[field])
    vector = None if doc.vector is None else {_VECTOR_NAME: [float(x) for x in doc.vector]}
    return DataObject(uuid=object_uuid(doc.id), properties=properties, vector=vector)



def _dimensions(description: str | None) -> int | None:
    """The vector length `create` recorded; None for collections from before it did."""
    found = _DIMENSIONS_RE.fullmatch(description or "")
    return int(found.group(1)) if found else None


def _pair(key: str, text: str) -> str:
    """A `meta_pairs` entry: a key and a value's text form (`filter_value`)."""
    return f"{key}={text}"


def _filters(where: MetadataFilter | None) -> tuple[_Filters | None, bool]:
    """(Weaviate filter, impossible): an empty "any of" list can match nothing."""
    parts: list[_Filters] = []
    for key, values in filter_terms(where):
        if not values:
            return None, True
        parts.append(Filter.by_property("meta_pairs").contains_any([_pair(key, v) for v in values]))
    if not parts:
        return None, False
    return (parts[0] if len(parts) == 1 else Filter.all_of(parts)), False


def _attempt(properties: Any) -> int:
    return int(json.loads(properties.get("metadata_json") or "{}").get("attempt") or 0)


def _hit(properties: Any, score: float) -> VectorHit:
    raw_meta = properties.get("metadata_json") or "{}"
    return VectorHit(
        id=str(properties.get("chunk_id")),
        text=str(properties.get("text") or ""),
        score=score,
        metadata=json.loads(raw_meta),
    )

