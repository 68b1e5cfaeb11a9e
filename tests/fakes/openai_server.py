"""A fake model provider over real HTTP on 127.0.0.1, speaking the OpenAI protocol.

Clients are tested through their real HTTP stack against the wire shapes (requests, answers,
server-sent events, errors) of:

    POST /v1/embeddings            deterministic hashed bags of words (texts sharing words
                                   get similar vectors, so retrieval can be asserted)
    POST /v1/chat/completions      blocking or streamed (`data:` chunks, `[DONE]`, usage with
                                   `stream_options.include_usage`), tool calls, vision parts
    POST /v1/completions           the legacy text completion (blocking), echoing the prompt
    POST /v1/audio/speech          fake audio bytes that carry the text
    POST /v1/audio/transcriptions  multipart; fake audio from /audio/speech is heard back
    POST /v1/rerank  (also /rerank) Cohere / Jina rerank protocol
    GET  /v1/models

    with FakeOpenAIServer(api_key="sk-test", dimensions=64) as server:
        client = OpenAIProtocolClient(server.base_url, "sk-test")
        server.script_chat(ScriptedChat("Hello there", chunk_delay=0.05))  # next chat reply
        server.fail_next(2, status=500, path="/chat/completions")         # injected failures
        server.rerank_scorer = lambda query, doc: 1.0 if "tea" in doc else 0.0
        server.calls("/chat/completions")                                  # call counting

Unscripted chat answers echo the last user message ("Echo: ...", with `[image: url]` for
each image part), so a test can see what reached the model. Embedding vectors are
deliberately NOT unit length (raw word counts), so a client's normalisation is exercised;
pass `normalise=True` to get unit vectors as OpenAI returns them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_WORDS = re.compile(r"\w+")
FAKE_AUDIO_MAGIC = b"FAKEAUDIO:"


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


def count_words(text: str) -> int:
    """The fake's token count: one per word."""
    return len(_WORDS.findall(text))


def word_overlap(query: str, document: str) -> float:
    """The default rerank score: the share of the query's words the document contains."""
    wanted = set(_WORDS.findall(query.lower()))
    if not wanted:
        return 0.0
    return len(wanted & set(_WORDS.findall(document.lower()))) / len(wanted)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, form fields for multipart, or the raw text
    at: float = field(default_factory=time.monotonic)


@dataclass
class ScriptedChat:
    """One chat reply. Streamed, `content` goes out in `chunks` (default: word by word)."""
    content: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # [{"name", "arguments"}]
    finish_reason: str | None = None  # default: "tool_calls" when there are any, else "stop"
    usage: dict[str, int] | None = None  # default: words of the prompt and of the reply
    chunks: list[str] | None = None
    chunk_delay: float = 0.0  # seconds before each streamed chunk
    break_after: int | None = None  # streamed: drop the connection after this many chunks

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            return self.chunks
        return re.findall(r"\S+\s*|\s+", self.content)


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    path: str | None  # only requests whose path ends with this; None: any endpoint


def _openai_error(status: int, message: str, type_: str, code: str | None,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None,
                                   "code": code}}, status_code=status, headers=headers)


def _bad_request(message: str) -> JSONResponse:
    return _openai_error(400, message, "invalid_request_error", None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content
                        if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _images_of(content: Any) -> list[str]:
    if not isinstance(content, list):
        return []
    return [str((p.get("image_url") or {}).get("url", "")) for p in content
            if isinstance(p, dict) and p.get("type") == "image_url"]


def echo_reply(body: dict[str, Any]) -> ScriptedChat:
    """The unscripted answer: the last user message back, and one tag per image seen."""
    users = [m for m in body["messages"] if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    tags = "".join(f" [image: {url[:80]}]" for url in _images_of(content))
    return ScriptedChat(f"Echo: {_text_of(content)}{tags}")


class FakeOpenAIServer:
    """Context manager running the fake on a free loopback port in a background thread.

    `api_key=None` accepts requests without a key (as a local Ollama does). `models`, when
    set, is the only model ids it serves; others answer OpenAI's 404 `model_not_found`.
    """

    def __init__(self, api_key: str | None = "sk-test", dimensions: int = 64,
                 normalise: bool = False, reverse_order: bool = False,
                 models: set[str] | None = None) -> None:
        self.api_key = api_key
        self.dimensions = dimensions
        self.normalise = normalise
        # Answer `data` in reverse index order, to check clients sort by `index`.
        self.reverse_order = reverse_order
        self.models = models
        self._started_with = (reverse_order, models)  # what reset() goes back to
        self.chat_responder: Callable[[dict[str, Any]], ScriptedChat] = echo_reply
        self.rerank_scorer: Callable[[str, str], float] = word_overlap
        self.transcript: str | None = None  # what /audio/transcriptions hears, when set
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._failures: deque[_Failure] = deque()
        self._delays: deque[float] = deque()
        self._hangs: list[str] = []  # one entry per request to hold, by path suffix
        self._scripted: deque[ScriptedChat] = deque()
        self._ids = itertools.count(1)
        self._released = threading.Event()  # set: requests held by `hang_next` end
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    # -- control ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """In the OpenAI SDK's form: POST to f"{base_url}/embeddings"."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None,
                  path: str | None = None) -> None:
        """Answer the next `count` requests (to paths ending with `path`, or any) with
        `status`; 429 gets OpenAI's rate-limit body, `retry_after` a Retry-After header."""
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, path) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds` before answering (for timeouts)."""
        with self._lock:
            self._delays.extend([seconds] * count)

    def hang_next(self, count: int, path: str) -> None:
        """Accept the next `count` requests to paths ending with `path` and never answer
        them (until `reset` or `stop`): a provider that hung."""
        with self._lock:
            self._hangs.extend([path] * count)

    def script_chat(self, *replies: ScriptedChat | str) -> None:
        """Queue the next chat replies, in order; after them, `chat_responder` answers."""
        with self._lock:
            self._scripted.extend(ScriptedChat(r) if isinstance(r, str) else r
                                  for r in replies)

    def reset(self) -> None:
        """Forget requests and scripts; answer as the server was started to."""
        self.reverse_order, self.models = self._started_with
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._delays.clear()
            self._hangs.clear()
            self._scripted.clear()
        self._released.set()
        self._released = threading.Event()
        self.chat_responder = echo_reply
        self.rerank_scorer = word_overlap
        self.transcript = None

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The requests whose path ends with `path` ("/chat/completions", "/rerank", ...)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path)]

    def calls(self, path: str) -> int:
        return len(self.requests_to(path))

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return self.requests_to("/embeddings")

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return self.requests_to("/chat/completions")

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
        self._released.set()
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
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/completions", self._completions, methods=["POST"]),
            Route("/v1/audio/speech", self._speech, methods=["POST"]),
            Route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"]),
            Route("/v1/rerank", self._rerank, methods=["POST"]),
            Route("/rerank", self._rerank, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    async def _admit(self, request: Request) -> tuple[Any, Response | None]:
        """Record the request, apply injected delays and failures and the key check.
        Returns the parsed body and, when the request is refused, the refusal."""
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            body: Any = {k: (await v.read() if isinstance(v, UploadFile) else v)
                         for k, v in form.items()}
        else:
            raw = await request.body()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        path = request.url.path
        with self._lock:
            self.requests.append(RecordedRequest(request.method, path,
                                                 dict(request.headers), body))
            delay = self._delays.popleft() if self._delays else 0.0
            failure = next((f for f in self._failures
                            if f.path is None or path.endswith(f.path)), None)
            if failure is not None:
                self._failures.remove(failure)
            hang = next((h for h in self._hangs if path.endswith(h)), None)
            if hang is not None:
                self._hangs.remove(hang)
            released = self._released
        if hang is not None:
            await asyncio.to_thread(released.wait)
        if delay:
            await asyncio.sleep(delay)
        if self.api_key is not None and \
                request.headers.get("authorization") != f"Bearer {self.api_key}":
            return body, _openai_error(401, "Incorrect API key provided.",
                                       "invalid_request_error", "invalid_api_key")
        if failure is not None:
            headers = ({"retry-after": f"{failure.retry_after:g}"}
                       if failure.retry_after is not None else None)
            if failure.status == 429:
                return body, _openai_error(429, "Rate limit reached for requests", "requests",
                                           "rate_limit_exceeded", headers)
            return body, _openai_error(failure.status, "The server had an error while "
                                       "processing your request.", "server_error", None,
                                       headers)
        if isinstance(body, dict) and self.models is not None \
                and body.get("model") not in self.models:
            return body, _openai_error(404, f"The model `{body.get('model')}` does not "
                                       "exist or you do not have access to it.",
                                       "invalid_request_error", "model_not_found")
        return body, None

    async def _models(self, request: Request) -> Response:
        _, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        ids = sorted(self.models) if self.models is not None else ["fake-embed", "fake-chat"]
        return JSONResponse({"object": "list", "data": [
            {"id": i, "object": "model", "created": 0, "owned_by": "eddy-tests"} for i in ids]})

    # -- embeddings ---------------------------------------------------------------------

    async def _embeddings(self, request: Request) -> Response:
        body, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        if not isinstance(body, dict):
            return _bad_request("We could not parse the JSON body of your request.")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if (not isinstance(body.get("model"), str) or not isinstance(texts, list) or not texts
                or not all(isinstance(t, str) for t in texts)):
            return _bad_request("'input' must be a non-empty string or array of strings"
                                " and 'model' a string.")
        if any(t == "" for t in texts):
            return _bad_request("'$.input' is invalid. Please check the API reference.")
        dims = body.get("dimensions", self.dimensions)
        if not isinstance(dims, int) or dims < 1:
            return _bad_request("'dimensions' must be a positive integer.")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _bad_request("'encoding_format' must be 'float' or 'base64'.")

        data: list[dict[str, Any]] = []
        for index, text in enumerate(texts):
            vector = bag_of_words_vector(text, dims, self.normalise)
            embedding: Any = vector
            if encoding == "base64":  # little-endian float32, as OpenAI sends it
                embedding = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        if self.reverse_order:
            data.reverse()
        tokens = sum(count_words(t) for t in texts)
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- chat -----------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        body, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) \
                or not isinstance(messages, list) or not messages \
                or not all(isinstance(m, dict) and m.get("role") for m in messages):
            return _bad_request("'messages' must be a non-empty array of messages with a "
                                "role, and 'model' a string.")
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        reply = scripted or self.chat_responder(body)
        prompt_tokens = sum(count_words(_text_of(m.get("content"))) for m in messages)
        usage = reply.usage or {"prompt_tokens": prompt_tokens,
                                "completion_tokens": count_words(reply.content),
                                "total_tokens": prompt_tokens + count_words(reply.content)}
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        calls = [{"id": f"call_{next(self._ids)}", "type": "function",
                  "function": {"name": c["name"], "arguments": c["arguments"]}}
                 for c in reply.tool_calls]
        completion_id = f"chatcmpl-{next(self._ids)}"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant",
                                       "content": reply.content if reply.content or not calls
                                       else None}
            if calls:
                message["tool_calls"] = calls
            return JSONResponse({
                "id": completion_id, "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._chat_stream(body["model"], completion_id, reply, calls, finish,
                              usage if include_usage else None),
            media_type="text/event-stream")

    async def _chat_stream(self, model: str, completion_id: str, reply: ScriptedChat,
                           calls: list[dict[str, Any]], finish: str,
                           usage: dict[str, int] | None) -> AsyncIterator[str]:
        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            chunk = {"id": completion_id, "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model, "choices": choices, **extra}
            return f"data: {json.dumps(chunk)}\n\n"

        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None}])
        for sent, piece in enumerate(reply.pieces()):
            if reply.break_after is not None and sent >= reply.break_after:
                raise ConnectionAbortedError("fake: stream broken off as scripted")
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for index, call in enumerate(calls):
            # As OpenAI streams them: id and name first, the arguments in pieces after.
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}
            yield event([{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}])
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 8):
                part = {"index": index, "function": {"arguments": arguments[start:start + 8]}}
                yield event([{"index": 0, "delta": {"tool_calls": [part]},
                              "finish_reason": None}])
        yield event([{"index": 0, "delta": {}, "finish_reason": finish}])
        if usage is not None:
            yield event([], usage=usage)
        yield "data: [DONE]\n\n"

    async def _completions(self, request: Request) -> Response:
        """The legacy text completion endpoint (blocking): the prompt's echo."""
        body, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) \
                or not isinstance(body.get("model"), str):
            return _bad_request("'prompt' must be a string and 'model' a string.")
        text = f"Echo: {body['prompt']}"
        prompt, completion = count_words(body["prompt"]), count_words(text)
        return JSONResponse({
            "id": f"cmpl-{next(self._ids)}", "object": "text_completion",
            "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}})

    # -- audio ----------------------------------------------------------------------------

    async def _speech(self, request: Request) -> Response:
        body, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        if not isinstance(body, dict) or not isinstance(body.get("input"), str) \
                or not body["input"] or not isinstance(body.get("model"), str):
            return _bad_request("'input' must be a non-empty string and 'model' a string.")
        audio_format = str(body.get("response_format") or "mp3")
        media = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg",
                 "aac": "audio/aac", "flac": "audio/flac", "pcm": "audio/pcm"}
        if audio_format not in media:
            return _bad_request(f"Invalid response_format '{audio_format}'.")
        return Response(FAKE_AUDIO_MAGIC + body["input"].encode(),
                        media_type=media[audio_format])

    async def _transcriptions(self, request: Request) -> Response:
        body, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        audio = body.get("file") if isinstance(body, dict) else None
        if not isinstance(audio, bytes) or not audio or not body.get("model"):
            return _bad_request("'file' must be an audio file and 'model' a string.")
        if self.transcript is not None:
            text = self.transcript
        elif audio.startswith(FAKE_AUDIO_MAGIC):
            text = audio[len(FAKE_AUDIO_MAGIC):].decode(errors="replace")
        else:
            text = f"{len(audio)} bytes of audio"
        return JSONResponse({"text": text})

    # -- rerank (Cohere / Jina protocol) ------------------------------------------------------

    async def _rerank(self, request: Request) -> Response:
        body, refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        documents = body.get("documents") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str) \
                or not isinstance(documents, list) or not isinstance(body.get("model"), str):
            return _bad_request("'query' must be a string, 'documents' an array and 'model' "
                                "a string.")
        texts = [d if isinstance(d, str) else str((d or {}).get("text", "")) for d in documents]
        top_n = body.get("top_n") or len(texts)
        scored = sorted(((self.rerank_scorer(body["query"], text), index)
                         for index, text in enumerate(texts)), key=lambda pair: -pair[0])
        results: list[dict[str, Any]] = []
        for score, index in scored[:top_n]:
            result: dict[str, Any] = {"index": index, "relevance_score": score}
            if body.get("return_documents", True):
                result["document"] = {"text": texts[index]}
            results.append(result)
        tokens = count_words(body["query"]) * max(len(texts), 1) + sum(map(count_words, texts))
        return JSONResponse({"id": f"rerank-{next(self._ids)}", "model": body["model"],
                             "results": results, "usage": {"total_tokens": tokens},
                             "meta": {"billed_units": {"search_units": 1}}})
