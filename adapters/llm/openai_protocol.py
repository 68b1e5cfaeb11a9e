"""One client for the OpenAI HTTP protocol, as OpenAI and the compatible servers (vLLM,
Ollama, LiteLLM, LocalAI, TEI, ...) speak it: chat completions (blocking and streamed as
server-sent events), tool calls, vision content parts, usage, embeddings, and the audio
endpoints `/audio/speech` and `/audio/transcriptions`.

Requests that fail with 408/409/429/5xx, or cannot connect, are retried with exponential
backoff, honouring `Retry-After` (capped). A stream is retried only before its first byte:
once tokens have been handed out, a retry would repeat them. A call with its retries has a
deadline (a stream: until its first byte; then each chunk has the read timeout). Failures
are typed, and never transient (adapters/outside.py):

    ProviderAuthError         401/403: the key is wrong or lacks access (provider's message)
    ProviderRateLimitError    429 after the retries
    ProviderBadRequestError   other 4xx: the request itself is wrong (model name, params)
    ProviderUnavailableError  5xx after the retries, unreachable, timed out, malformed answer
    ProviderTimeoutError      no answer within the deadline or a read timeout (unavailable)

Messages are passed in the protocol's own JSON shape (this client is the edge to the
outside): `{"role": "user", "content": "..."}` or, for vision, content parts built with
`text_part` / `image_part`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.outside import OutsideServiceError, OutsideServiceTimeout, limits

# Statuses worth another try: rate limiting and server-side trouble.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 20.0  # never sleep longer than this on a server's Retry-After
MAX_CONNECTIONS = 100  # per endpoint and key (CHAT_CONCURRENCY answers stream at once)

Message = dict[str, Any]  # one chat message in the protocol's JSON shape


# -- errors ---------------------------------------------------------------------------------

class ProviderError(OutsideServiceError):
    """The model provider failed. `message` is the provider's own words when it gave any."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}" if status_code else message)
        self.message = message
        self.status_code = status_code


class ProviderAuthError(ProviderError):
    """401/403: wrong key, or the key may not use this model."""


class ProviderRateLimitError(ProviderError):
    """429, still after the retries."""


class ProviderBadRequestError(ProviderError):
    """A 4xx other than auth and rate limit: retrying the same request fails the same way."""


class ProviderUnavailableError(ProviderError):
    """5xx after the retries, unreachable, timed out, or an answer that breaks the protocol."""


class ProviderTimeoutError(ProviderUnavailableError, OutsideServiceTimeout):
    """No answer within the call's deadline, retries included."""


def _error_for(status: int, message: str) -> ProviderError:
    if status in (401, 403):
        return ProviderAuthError(message, status)
    if status == 429:
        return ProviderRateLimitError(message, status)
    if 400 <= status < 500 and status not in RETRY_STATUSES:
        return ProviderBadRequestError(message, status)
    return ProviderUnavailableError(message, status)


# -- results --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> Usage | None:
        if not isinstance(raw, dict):
            return None
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
        return cls(prompt, completion, int(raw.get("total_tokens") or prompt + completion))


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (it may not parse)

    def as_message_part(self) -> dict[str, Any]:
        """The shape an assistant message carries back in `tool_calls`."""
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ChatCompletion:
    content: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: Usage | None
    model: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: `index` says which call it continues."""
    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True)
class ChatChunk:
    """One streamed `chat.completion.chunk`; the last one may carry only `usage`."""
    content: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class StreamAccumulator:
    """Folds streamed chunks into the ChatCompletion a blocking call would have returned."""
    model: str
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    _calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def add(self, chunk: ChatChunk) -> None:
        self.parts.append(chunk.content)
        for delta in chunk.tool_calls:
            call = self._calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] = call["name"] + (delta.name or "")
            call["arguments"] += delta.arguments
        self.finish_reason = chunk.finish_reason or self.finish_reason
        self.usage = chunk.usage or self.usage

    def result(self) -> ChatCompletion:
        calls = [ToolCall(**self._calls[i]) for i in sorted(self._calls)]
        return ChatCompletion("".join(self.parts), calls, self.finish_reason, self.usage,
                              self.model)


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]  # as the server sent them, in input order
    usage: Usage | None


# -- message helpers ------------------------------------------------------------------------

def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(url: str, detail: str = "auto") -> dict[str, Any]:
    """An image for a vision model: an https URL or a `data:image/...;base64,` URL."""
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def api_url(base_url: str, endpoint: str) -> str:
    """Where to send `endpoint` ("chat/completions"), following the OpenAI SDK's `base_url`.

    "https://api.openai.com/v1" -> ".../v1/chat/completions"; a bare host such as
    "http://127.0.0.1:8000" -> ".../v1/chat/completions"; a URL already ending in the
    endpoint is kept.
    """
    url = base_url.rstrip("/")
    if url.endswith("/" + endpoint):
        return url
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return f"{url}/{endpoint}"


# -- the client -----------------------------------------------------------------------------

class OpenAIProtocolClient:
    """A connection to one provider endpoint with one key. Safe to share between tasks of
    one event loop; the HTTP pool is made on first use inside the running loop."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float | None = None,
                 connect_timeout: float | None = None, deadline: float | None = None,
                 max_retries: int | None = None, retry_backoff: float = 0.5,
                 extra_headers: Mapping[str, str] | None = None) -> None:
        """Limits not given are the process's (adapters/outside.py)."""
        defaults = limits()
        max_retries = defaults.max_retries if max_retries is None else max_retries
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url
        self._api_key = api_key
        # `timeout` bounds each read (for a stream: the wait for the next chunk), not the
        # whole answer, so a long generation that keeps talking is not cut off.
        self._timeout = httpx.Timeout(
            defaults.read_timeout if timeout is None else timeout,
            connect=defaults.connect_timeout if connect_timeout is None else connect_timeout)
        self._deadline = defaults.deadline if deadline is None else deadline
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._headers = dict(extra_headers or {})
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    # -- chat -------------------------------------------------------------------------------

    async def chat(self, model: str, messages: Sequence[Message], *,
                   tools: Sequence[dict[str, Any]] | None = None,
                   **params: Any) -> ChatCompletion:
        """A blocking chat completion. `params` go into the request as they are
        (temperature, max_tokens, stop, tool_choice, response_format, ...)."""
        body = _chat_body(model, messages, tools, params)
        answer = await self._post_json("chat/completions", body)
        try:
            choice = answer["choices"][0]
            message = choice["message"]
            calls = [ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"] or "")
                     for c in message.get("tool_calls") or []]
            return ChatCompletion(_text_of(message.get("content")), calls,
                                  choice.get("finish_reason"), Usage.from_json(answer.get("usage")),
                                  str(answer.get("model") or model))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderUnavailableError(f"malformed chat completion: {exc!r}") from exc

    async def stream_chat(self, model: str, messages: Sequence[Message], *,
                          tools: Sequence[dict[str, Any]] | None = None,
                          include_usage: bool = True, **params: Any) -> AsyncIterator[ChatChunk]:
        """Chunks as the server streams them. With `include_usage` the request asks for
        `stream_options.include_usage`, so the last chunk carries the token counts."""
        body = _chat_body(model, messages, tools, params)
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        response = await self._request("POST", "chat/completions", stream=True, json=body)
        try:
            async for data in _sse_data(response):
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise ProviderUnavailableError(f"stream chunk is not JSON: {data[:200]!r}"
                                                   ) from exc
                if isinstance(chunk, dict) and "error" in chunk:  # an error after the 200
                    raise ProviderUnavailableError(_message_of(chunk))
                yield _parse_chunk(chunk)
        finally:
            await response.aclose()

    # -- embeddings, audio, models --------------------------------------------------------

    async def embeddings(self, model: str, texts: Sequence[str], *,
                         dimensions: int | None = None) -> Embeddings:
        # OpenAI rejects empty strings in `input`; a space embeds as "no content" instead.
        body: dict[str, Any] = {"model": model,
                                "input": [t if t.strip() else " " for t in texts],
                                "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        answer = await self._post_json("embeddings", body)
        try:
            items = sorted(answer["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(f"malformed embeddings response: {exc!r}") from exc
        if len(vectors) != len(texts):
            raise ProviderUnavailableError(f"asked for {len(texts)} embeddings, "
                                           f"got {len(vectors)}")
        return Embeddings(vectors, Usage.from_json(answer.get("usage")))

    async def speech(self, model: str, text: str, *, voice: str = "alloy",
                     response_format: str = "mp3", **params: Any) -> bytes:
        """`POST /audio/speech`: the audio bytes in `response_format`."""
        body = {"model": model, "input": text, "voice": voice,
                "response_format": response_format, **params}
        response = await self._request("POST", "audio/speech", json=body)
        return response.content

    async def transcribe(self, model: str, audio: bytes, filename: str, *,
                         content_type: str = "application/octet-stream",
                         **params: Any) -> str:
        """`POST /audio/transcriptions` (multipart): the text heard."""
        response = await self._request(
            "POST", "audio/transcriptions",
            files={"file": (filename, audio, content_type)},
            data={"model": model, "response_format": "json",
                  **{k: str(v) for k, v in params.items()}})
        answer = _json_of(response)
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise ProviderUnavailableError("malformed transcription response")
        return str(answer["text"])

    async def list_models(self) -> list[str]:
        """`GET /models`: the ids the key may use (a cheap way to check a key)."""
        answer = _json_of(await self._request("GET", "models"))
        try:
            return [str(item["id"]) for item in answer["data"]]
        except (KeyError, TypeError) as exc:
            raise ProviderUnavailableError(f"malformed models response: {exc!r}") from exc

    async def post_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        """Any other JSON endpoint of the same server (e.g. `rerank`), with the same
        retries and typed errors."""
        return await self._post_json(endpoint, body)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
            self._client_loop = None

    # -- internals ------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # A client made on another (likely closed) loop cannot be reused or closed here.
            # As many idle connections kept as may be open: with more answers streaming at
            # once than httpx's default 20, each call past it would connect anew.
            self._client = httpx.AsyncClient(timeout=self._timeout, limits=httpx.Limits(
                max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS))
            self._client_loop = loop
        return self._client

    def _auth_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self._api_key:  # local servers (Ollama, vLLM) often take no key at all
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _post_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        return _json_of(await self._request("POST", endpoint, json=body))

    async def _request(self, method: str, endpoint: str, *, stream: bool = False,
                       **kwargs: Any) -> httpx.Response:
        """Send, retrying as the module says, within the deadline. With `stream`, the
        answer's body is left unread for the caller (who must close it); retries happen
        only before that."""
        url = api_url(self.base_url, endpoint)
        try:
            async with asyncio.timeout(self._deadline):
                return await self._send_retrying(method, url, stream, **kwargs)
        except TimeoutError as exc:
            raise ProviderTimeoutError(f"no answer from the provider's {endpoint} endpoint "
                                       f"within {self._deadline:g} s") from exc

    async def _send_retrying(self, method: str, url: str, stream: bool,
                             **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            http = self._http()
            request = http.build_request(method, url, headers=self._auth_headers(), **kwargs)
            try:
                response = await http.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                # Not retried: a retry would multiply an already long wait.
                raise ProviderTimeoutError(f"request to {url} timed out") from exc
            except httpx.TransportError as exc:
                if attempt < self._max_retries:  # connection refused/reset: often transient
                    await asyncio.sleep(self._backoff(attempt, None))
                    attempt += 1
                    continue
                raise ProviderUnavailableError(f"request to {url} failed: {exc!r}") from exc
            if response.status_code < 400:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            if response.status_code in RETRY_STATUSES and attempt < self._max_retries:
                await asyncio.sleep(self._backoff(attempt, response.headers))
                attempt += 1
                continue
            raise _error_for(response.status_code, _message_of_response(response))

    def _backoff(self, attempt: int, headers: httpx.Headers | None) -> float:
        waited = retry_after_seconds(headers) if headers is not None else None
        if waited is not None:
            return waited
        return float(self._retry_backoff * (2 ** attempt))


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream (multi-line data joined by \\n;
    comments, `event:` and `id:` lines ignored, as the OpenAI protocol uses none)."""
    lines: list[str] = []
    try:
        async for line in response.aiter_lines():
            if not line:
                if lines:
                    yield "\n".join(lines)
                    lines = []
            elif line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
        if lines:
            yield "\n".join(lines)
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError("stream stalled: no chunk within the read timeout") from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailableError(f"stream broke off: {exc!r}") from exc


def _chat_body(model: str, messages: Sequence[Message],
               tools: Sequence[dict[str, Any]] | None, params: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": list(messages)}
    if tools:
        body["tools"] = list(tools)
    body.update({k: v for k, v in params.items() if v is not None})
    return body


def _parse_chunk(chunk: Any) -> ChatChunk:
    try:
        usage = Usage.from_json(chunk.get("usage"))
        choices = chunk.get("choices") or []
        if not choices:  # the usage-only chunk of stream_options.include_usage
            return ChatChunk(usage=usage)
        choice = choices[0]
        delta = choice.get("delta") or {}
        calls = [ToolCallDelta(int(c.get("index", 0)), c.get("id"),
                               (c.get("function") or {}).get("name"),
                               (c.get("function") or {}).get("arguments") or "")
                 for c in delta.get("tool_calls") or []]
        return ChatChunk(_text_of(delta.get("content")), calls, choice.get("finish_reason"),
                         usage)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ProviderUnavailableError(f"malformed stream chunk: {exc!r}") from exc


def _text_of(content: Any) -> str:
    """Message content is a string, null (tool calls only), or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProviderUnavailableError(f"answer from {response.url} is not JSON") from exc


def _message_of(body: Any) -> str:
    """The message of OpenAI's `{"error": {"message"}}` shape, or of the other common ones
    (`{"error": "..."}`, `{"message": ...}`, `{"detail": ...}`)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])
    return ""


def _message_of_response(response: httpx.Response) -> str:
    try:
        message = _message_of(response.json())
    except ValueError:
        message = ""
    return message or response.text[:500] or response.reason_phrase


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The server's requested wait: `retry-after-ms` (OpenAI), `Retry-After` in seconds or
    as an HTTP date; capped at MAX_RETRY_AFTER. None when it names none."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return min(max(float(millis) / 1000, 0.0), MAX_RETRY_AFTER)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), MAX_RETRY_AFTER)
