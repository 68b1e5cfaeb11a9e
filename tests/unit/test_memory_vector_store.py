"""The vector store contract (tests/contracts/vector_store.py) on the in-memory store of the
unit tier, with the pgvector behaviour it mirrors, and what it adds."""

from __future__ import annotations

import uuid

import pytest

from adapters.vector.memory import InMemoryVectorStore
from tests.contracts.vector_store import DIM, A, PostgresLikeStoreChecks, VectorStoreContract


class TestInMemoryVectorStore(PostgresLikeStoreChecks, VectorStoreContract):
    """The unit tier's store keeps the whole contract and pgvector's checks that are not
    about Postgres itself; below, its own."""

    @pytest.fixture
    def store(self) -> InMemoryVectorStore:
        return InMemoryVectorStore()

    async def test_documents_lists_what_is_stored(
        self, store: InMemoryVectorStore, filled: str
    ) -> None:
        stored = store.documents(filled)
        assert [d.id for d in stored] == ["a", "b", "c", "d"]
        assert stored[0] == A
        assert store.documents(uuid.uuid4().hex) == []
        assert store.collections() == {filled: DIM}
