"""Embedding model providers: texts in, unit-length vectors out."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray


class EmbeddingError(Exception):
    """The provider failed (unreachable, bad answer); the caller may retry."""


class EmbeddingProvider(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order."""
        ...

    async def embed_query(self, text: str) -> list[float]: ...

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as the model sees them (used for chunk sizes and usage)."""
        ...


class InferenceThread:
    """A local model's forward passes, each on the one thread this model owns (they are
    serialised by the model's lock anyway).

    Why one thread: numpy's BLAS keeps working buffers per calling thread and glibc a heap
    arena per thread, neither given back. Spread over asyncio's default pool (up to six
    threads), bulk indexing grew a worker's RSS by about 60 MB per thread for good
    (measured: 477 MB against 228 MB for the same batches on one thread)."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def embed(self, embed_sync: Callable[[list[str]], NDArray[np.float32]],
                    texts: Sequence[str]) -> list[list[float]]:
        """`embed_sync(texts)` on the model's thread, as lists (the event loop stays free)."""
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of strings, not a string")
        if not texts:
            return []
        vectors: Any = await asyncio.get_running_loop().run_in_executor(
            self._executor, embed_sync, list(texts))
        result: list[list[float]] = vectors.tolist()
        return result


class LocalModel(ABC):
    """An EmbeddingProvider computed on the CPU in this process (MODEL_NAME, DIMENSIONS).

    Its files load lazily under `_load_lock`, each once per instance. Its forward passes
    run on its own InferenceThread, one at a time under `_infer_lock`: a pass already uses
    every core it may, so two concurrent ones would only thrash; locking per pass keeps
    callers fair.
    """

    MODEL_NAME: ClassVar[str]
    DIMENSIONS: ClassVar[int]

    def __init__(self, thread_name: str) -> None:
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        self._inference = InferenceThread(thread_name)

    @property
    def model_name(self) -> str:
        return self.MODEL_NAME

    @property
    def dimensions(self) -> int:
        return self.DIMENSIONS

    @abstractmethod
    def count_tokens(self, text: str) -> int: ...

    @abstractmethod
    def embed_sync(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(len(texts), DIMENSIONS) float32 unit vectors. Blocking: runs on the model's
        thread."""

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._inference.embed(self.embed_sync, texts)

    async def embed_query(self, text: str) -> list[float]:
        # The local models are symmetric: queries and documents are embedded the same way.
        return (await self.embed_documents([text]))[0]
