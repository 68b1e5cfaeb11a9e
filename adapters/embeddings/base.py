"""Embedding model providers: texts in, unit-length vectors out."""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar, Protocol

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


# Texts one shared forward-pass run takes at most: the requests waiting beyond it go in the
# next run, so a query queued behind bulk indexing waits for a bounded amount of work.
MAX_COALESCED_TEXTS = 256


@dataclass
class _Request:
    texts: list[str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[list[float]]]

    def settle(self, result: list[list[float]] | None, error: BaseException | None) -> None:
        def settle() -> None:
            if self.future.done():  # its caller gave up (cancelled): nothing to hand over
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result or [])
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # its event loop is closed: no one is left to tell
            pass


class InferenceThread:
    """A local model's forward passes, on the one thread this model owns, with the requests
    that wait meanwhile embedded together.

    Why one thread: numpy's BLAS keeps working buffers per calling thread and glibc a heap
    arena per thread, neither given back. Spread over asyncio's default pool (up to six
    threads), bulk indexing grew a worker's RSS by about 60 MB per thread for good
    (measured: 477 MB against 228 MB for the same batches on one thread).

    Why together: the model sorts a call's texts by length and cuts them into passes of
    similar lengths. One document's chunks alone (8-16 in bench.indexing) make passes of
    ~6 texts padded to their longest; the chunks of the documents an indexing worker has in
    flight, embedded in one call, make passes twice as full with a quarter less padding:
    22-27% less model CPU for the same chunks. A call that fails is retried request by
    request, so a text the model rejects fails its own caller only."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._draining = False

    async def embed(self, embed_sync: Callable[[list[str]], NDArray[np.float32]],
                    texts: Sequence[str]) -> list[list[float]]:
        """`embed_sync(texts)` on the model's thread, as lists (the event loop stays free)."""
        if isinstance(texts, str):
            raise TypeError("embed_documents takes a sequence of strings, not a string")
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(list(texts), loop, loop.create_future())
        with self._lock:
            self._waiting.append(request)
            start, self._draining = not self._draining, True
        if start:
            self._executor.submit(self._drain, embed_sync)
        return await request.future

    def _drain(self, embed_sync: Callable[[list[str]], NDArray[np.float32]]) -> None:
        """On the model's thread: embed what waits, in shared calls, until nothing does."""
        while True:
            with self._lock:
                taken, size = 0, 0
                while taken < len(self._waiting) and (
                        taken == 0 or size + len(self._waiting[taken].texts)
                        <= MAX_COALESCED_TEXTS):
                    size += len(self._waiting[taken].texts)
                    taken += 1
                group, self._waiting = self._waiting[:taken], self._waiting[taken:]
                if not group:
                    self._draining = False
                    return
            group = [r for r in group if not r.future.done()]  # callers still waiting
            if not group:
                continue
            try:
                vectors = embed_sync([t for r in group for t in r.texts]).tolist()
            except Exception as error:
                if len(group) == 1:
                    group[0].settle(None, error)
                    continue
                for request in group:  # which request's texts fail: each alone
                    try:
                        request.settle(embed_sync(request.texts).tolist(), None)
                    except Exception as own:
                        request.settle(None, own)
                continue
            start = 0
            for request in group:
                request.settle(vectors[start:start + len(request.texts)], None)
                start += len(request.texts)


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
