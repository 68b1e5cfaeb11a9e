"""A fake OpenAI-compatible embeddings server over real HTTP on 127.0.0.1.

Speaks `POST /v1/embeddings` as OpenAI does (request, response and error shapes), so clients
are tested through their real HTTP stack. Vectors are deterministic hashed bags of words:
texts sharing words get similar vectors, so retrieval behaviour can be asserted.

    with FakeOpenAIServer(api_key="sk-test", dimensions=64) as server:
        client = OpenAICompatibleEmbeddings(server.base_url, "sk-test", "fake-embed", 64)
        server.fail_next(2, status=500)   # the next two requests fail
        server.requests                   # what the server received

Vectors are deliberately NOT unit length (raw word counts), so a client's normalisation is
exercised; pass `normalise=True` to get unit vectors as OpenAI returns them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import re
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_WORDS = re.compile(r"\w+")


def bag_of_words_vector(text: str, dimensions: int, normalise: bool = False) -> list[float]:
    """Each lower-cased word adds +-1 at a hashed position (feature hashing)."""
    vector = [0.0] * dimensions
    for word in _WORDS.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "big")
        vector[value % dimensions] += 1.0 if (value >> 63) & 1 else -1.0
    if not any(vector):
        vector[0] = 1.0  # no words: a fixed vector rather than an unusable zero one
    if normalise:
        norm = math.sqrt(sum(x * x for x in vector))
        vector = [x / norm for x in vector]
    return vector


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it was not JSON
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Failure:
    status: int
    retry_after: float | None


def _openai_error(status: int, message: str, type_: str, code: str | None,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None,
                                   "code": code}}, status_code=status, headers=headers)


class FakeOpenAIServer:
    """Context manager running the fake on a free loopback port in a background thread."""

    def __init__(self, api_key: str = "sk-test", dimensions: int = 64,
                 normalise: bool = False, reverse_order: bool = False) -> None:
        self.api_key = api_key
        self.dimensions = dimensions
        self.normalise = normalise
        # Answer `data` in reverse index order, to check clients sort by `index`.
        self.reverse_order = reverse_order
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._delays: deque[float] = deque()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    # -- control ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """In the OpenAI SDK's form: POST to f"{base_url}/embeddings"."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        """Answer the next `count` requests with `status` (429 gets OpenAI's rate-limit body)."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds` before answering (for timeouts)."""
        with self._lock:
            self._delays.extend([seconds] * count)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._delays.clear()

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/embeddings")]

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        # Bind first and hand the socket to uvicorn: the port is ours before anyone asks.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"fake-openai-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the app ----------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body: Any = await request.json()
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.url.path,
                                                 dict(request.headers), body))
        return body

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: Request) -> JSONResponse:
        await self._record(request)
        if not self._authorised(request):
            return self._unauthorised()
        return JSONResponse({"object": "list", "data": [
            {"id": "fake-embed", "object": "model", "created": 0, "owned_by": "eddy-tests"}]})

    def _unauthorised(self) -> JSONResponse:
        return _openai_error(401, "Incorrect API key provided.", "invalid_request_error",
                             "invalid_api_key")

    async def _embeddings(self, request: Request) -> JSONResponse:
        body = await self._record(request)
        with self._lock:
            delay = self._delays.popleft() if self._delays else 0.0
            failure = self._failures.popleft() if self._failures else None
        if delay:
            await asyncio.sleep(delay)
        if not self._authorised(request):
            return self._unauthorised()
        if failure is not None:
            headers = ({"retry-after": f"{failure.retry_after:g}"}
                       if failure.retry_after is not None else None)
            if failure.status == 429:
                return _openai_error(429, "Rate limit reached for requests", "requests",
                                     "rate_limit_exceeded", headers)
            return _openai_error(failure.status, "The server had an error while processing "
                                 "your request.", "server_error", None, headers)

        if not isinstance(body, dict):
            return _openai_error(400, "We could not parse the JSON body of your request.",
                                 "invalid_request_error", None)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if (not isinstance(body.get("model"), str) or not isinstance(texts, list) or not texts
                or not all(isinstance(t, str) for t in texts)):
            return _openai_error(400, "'input' must be a non-empty string or array of strings"
                                 " and 'model' a string.", "invalid_request_error", None)
        if any(t == "" for t in texts):
            return _openai_error(400, "'$.input' is invalid. Please check the API reference.",
                                 "invalid_request_error", None)
        dims = body.get("dimensions", self.dimensions)
        if not isinstance(dims, int) or dims < 1:
            return _openai_error(400, "'dimensions' must be a positive integer.",
                                 "invalid_request_error", None)
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _openai_error(400, "'encoding_format' must be 'float' or 'base64'.",
                                 "invalid_request_error", None)

        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = bag_of_words_vector(text, dims, self.normalise)
            embedding: Any = vector
            if encoding == "base64":  # little-endian float32, as OpenAI sends it
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        if self.reverse_order:
            data.reverse()
        tokens = sum(len(_WORDS.findall(t)) for t in texts)
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
