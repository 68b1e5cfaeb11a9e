"""OpenAIProtocolClient against the fake provider over real HTTP: chat (blocking, streamed,
tool calls, vision, usage), audio, models, retries, timeouts and typed errors."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from adapters.embeddings.base import EmbeddingError
from adapters.embeddings.openai_compatible import OpenAICompatibleEmbeddings
from adapters.llm.openai_protocol import (
    ChatChunk,
    OpenAIProtocolClient,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderRateLimitError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    StreamAccumulator,
    image_part,
    retry_after_seconds,
    text_part,
)
from adapters.llm.rerank import HTTPReranker
from adapters.transient import is_transient
from tests.fakes.openai_server import FakeOpenAIServer, ScriptedChat
from tests.fakes.silent_server import SilentServer

KEY = "sk-protocol-test"
MODEL = "fake-chat"
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=KEY) as fake:
        yield fake


def client(fake: FakeOpenAIServer, **kwargs: object) -> OpenAIProtocolClient:
    options: dict[str, object] = {"timeout": 5.0, "retry_backoff": 0.01}
    options.update(kwargs)
    return OpenAIProtocolClient(fake.base_url, str(options.pop("api_key", KEY)),
                                **options)  # type: ignore[arg-type]


async def collect(fake: FakeOpenAIServer, **kwargs: object) -> list[ChatChunk]:
    return [chunk async for chunk in client(fake).stream_chat(MODEL, HELLO, **kwargs)]


async def test_blocking_chat_speaks_the_protocol(fake: FakeOpenAIServer) -> None:
    answer = await client(fake).chat(MODEL, HELLO, temperature=0.2, max_tokens=50, stop=None)
    assert answer.content == "Echo: hello there"
    assert answer.finish_reason == "stop" and answer.tool_calls == [] and answer.model == MODEL
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 3)
    assert answer.usage.total_tokens == 7
    (request,) = fake.chat_requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    # parameters travel as they are; None ones are left out
    assert request.body == {"model": MODEL, "messages": HELLO, "temperature": 0.2,
                            "max_tokens": 50}


async def test_streamed_chat_arrives_in_chunks_with_usage_last(fake: FakeOpenAIServer) -> None:
    fake.script_chat(ScriptedChat("one two three four", chunk_delay=0.15))
    started = time.monotonic()
    stream = client(fake).stream_chat(MODEL, HELLO)
    first = await anext(aiter(stream))
    first_at = time.monotonic() - started
    chunks = [first] + [chunk async for chunk in stream]
    total = time.monotonic() - started
    assert first_at < total - 0.3  # tokens are handed out as they come, not at the end
    assert [c.content for c in chunks if c.content] == ["one ", "two ", "three ", "four"]
    assert chunks[-1].usage is not None and chunks[-1].content == ""
    assert chunks[-1].usage.completion_tokens == 4
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    body = fake.chat_requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_stream_without_include_usage_has_no_usage(fake: FakeOpenAIServer) -> None:
    chunks = await collect(fake, include_usage=False)
    assert all(c.usage is None for c in chunks)
    assert "stream_options" not in fake.chat_requests[0].body
    assert "".join(c.content for c in chunks) == "Echo: hello there"


async def test_tool_calls_blocking_and_streamed_agree(fake: FakeOpenAIServer) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}}}}]
    arguments = json.dumps({"city": "Lisbon", "unit": "celsius"})
    scripted = ScriptedChat(tool_calls=[{"name": "get_weather", "arguments": arguments}])
    fake.script_chat(scripted, scripted)
    blocking = await client(fake).chat(MODEL, HELLO, tools=tools, tool_choice="auto")
    assert blocking.finish_reason == "tool_calls" and blocking.content == ""
    (call,) = blocking.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", json.loads(arguments))
    assert call.id.startswith("call_")
    assert fake.chat_requests[0].body["tools"] == tools
    assert fake.chat_requests[0].body["tool_choice"] == "auto"

    folded = StreamAccumulator(MODEL)
    chunks = [c async for c in client(fake).stream_chat(MODEL, HELLO, tools=tools)]
    assert sum(1 for c in chunks if c.tool_calls) > 2  # the arguments came in pieces
    for chunk in chunks:
        folded.add(chunk)
    streamed = folded.result()
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [("get_weather", arguments)]
    assert streamed.finish_reason == "tool_calls" and streamed.usage is not None
    # the call goes back into the conversation in the protocol's own shape
    assert streamed.tool_calls[0].as_message_part()["function"]["arguments"] == arguments


async def test_vision_content_parts_reach_the_model(fake: FakeOpenAIServer) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    messages = [{"role": "user", "content": [text_part("what is this?"), image_part(image)]}]
    answer = await client(fake).chat(MODEL, messages)
    assert answer.content == f"Echo: what is this? [image: {image}]"
    sent = fake.chat_requests[0].body["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": image, "detail": "auto"}}


async def test_server_errors_are_retried_then_succeed(fake: FakeOpenAIServer) -> None:
    fake.fail_next(2, status=502, path="/chat/completions")
    answer = await client(fake, max_retries=2).chat(MODEL, HELLO)
    assert answer.content == "Echo: hello there"
    assert fake.calls("/chat/completions") == 3


async def test_a_stream_is_retried_before_its_first_byte(fake: FakeOpenAIServer) -> None:
    fake.fail_next(1, status=503)
    chunks = await collect(fake)
    assert "".join(c.content for c in chunks) == "Echo: hello there"
    assert fake.calls("/chat/completions") == 2


async def test_rate_limit_honours_retry_after_then_is_typed(fake: FakeOpenAIServer) -> None:
    fake.fail_next(1, status=429, retry_after=0.3)
    started = time.monotonic()
    await client(fake).chat(MODEL, HELLO)
    assert time.monotonic() - started >= 0.3
    fake.fail_next(3, status=429)
    with pytest.raises(ProviderRateLimitError, match="Rate limit reached") as info:
        await client(fake, max_retries=1).chat(MODEL, HELLO)
    assert info.value.status_code == 429
    assert fake.calls("/chat/completions") == 2 + 2


async def test_wrong_key_is_an_auth_error_with_the_providers_message(
        fake: FakeOpenAIServer) -> None:
    with pytest.raises(ProviderAuthError) as info:
        await client(fake, api_key="sk-wrong").chat(MODEL, HELLO)
    assert info.value.message == "Incorrect API key provided."
    assert info.value.status_code == 401
    assert fake.calls("/chat/completions") == 1  # never retried
    with pytest.raises(ProviderAuthError):
        await anext(aiter(client(fake, api_key="sk-wrong").stream_chat(MODEL, HELLO)))


async def test_unknown_model_and_bad_requests_are_not_retried(fake: FakeOpenAIServer) -> None:
    fake.models = {"gpt-4o-mini"}
    with pytest.raises(ProviderBadRequestError, match="does not exist") as info:
        await client(fake).chat("gpt-nope", HELLO)
    assert info.value.status_code == 404
    with pytest.raises(ProviderBadRequestError, match="messages"):
        await client(fake).chat("gpt-4o-mini", [])
    assert fake.calls("/chat/completions") == 2
    assert await client(fake).list_models() == ["gpt-4o-mini"]


async def test_a_stream_broken_midway_fails_without_a_retry(fake: FakeOpenAIServer) -> None:
    fake.script_chat(ScriptedChat("a b c d e f", break_after=2))
    received: list[str] = []
    with pytest.raises(ProviderUnavailableError, match="broke off"):
        async for chunk in client(fake).stream_chat(MODEL, HELLO):
            received.append(chunk.content)
    assert "".join(received) == "a b "  # what came before the break was handed out once
    assert fake.calls("/chat/completions") == 1


async def test_timeouts_are_typed(fake: FakeOpenAIServer) -> None:
    fake.delay_next(2.0)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="timed out"):
        await client(fake, timeout=0.3).chat(MODEL, HELLO)
    assert time.monotonic() - started < 1.5
    fake.script_chat(ScriptedChat("slow words here", chunk_delay=1.0))
    with pytest.raises(ProviderUnavailableError, match="stalled"):
        async for _ in client(fake, timeout=0.3).stream_chat(MODEL, HELLO):
            pass


async def test_a_server_that_never_answers_fails_the_call_for_good() -> None:
    """Accepts the connection, never answers: the call ends at its deadline with a typed
    error that no worker retries without limit (it is not an outage of Eddy's own)."""
    with SilentServer() as silent:
        provider = OpenAIProtocolClient(silent.base_url, KEY, timeout=30.0, deadline=0.5)
        with pytest.raises(ProviderTimeoutError, match=r"within 0\.5 s") as blocking:
            await provider.chat(MODEL, HELLO)
        with pytest.raises(ProviderTimeoutError, match=r"within 0\.5 s") as streamed:
            async for _ in provider.stream_chat(MODEL, HELLO):
                pass
        embeddings = OpenAICompatibleEmbeddings(silent.base_url, KEY, "bge-m3", 8,
                                                timeout=0.3)
        with pytest.raises(EmbeddingError, match="timed out") as embedding:
            await embeddings.embed_query("hello")
        await provider.aclose()
        await embeddings.aclose()
    for failure in (blocking.value, streamed.value, embedding.value):
        assert not is_transient(failure)


async def test_retries_stop_at_the_deadline(fake: FakeOpenAIServer) -> None:
    fake.fail_next(10, status=503, retry_after=5)  # each retry asked to wait 5 s
    with pytest.raises(ProviderTimeoutError, match="chat/completions endpoint within 1 s"):
        await client(fake, max_retries=10, deadline=1.0).chat(MODEL, HELLO)
    assert fake.calls("/chat/completions") == 1  # the first wait ran past the deadline


async def test_unreachable_server_is_unavailable() -> None:
    provider = OpenAIProtocolClient("http://127.0.0.1:9/v1", KEY, max_retries=1,
                                    retry_backoff=0.01)
    with pytest.raises(ProviderUnavailableError, match="failed"):
        await provider.chat(MODEL, HELLO)


async def test_speech_and_transcription_round_trip(fake: FakeOpenAIServer) -> None:
    provider = client(fake)
    audio = await provider.speech("tts-1", "good morning", voice="nova")
    assert audio and fake.requests_to("/audio/speech")[0].body == {
        "model": "tts-1", "input": "good morning", "voice": "nova", "response_format": "mp3"}
    text = await provider.transcribe("whisper-1", audio, "hello.mp3", content_type="audio/mpeg")
    assert text == "good morning"
    (request,) = fake.requests_to("/audio/transcriptions")
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert request.body["model"] == "whisper-1" and request.body["file"] == audio
    with pytest.raises(ProviderBadRequestError, match="input"):
        await provider.speech("tts-1", "")


async def test_other_endpoints_share_the_retries(fake: FakeOpenAIServer) -> None:
    fake.fail_next(1, status=500, path="/rerank")
    answer = await client(fake).post_json(
        "rerank", {"model": "rerank-1", "query": "green tea", "documents": ["coffee", "tea"]})
    assert [r["index"] for r in answer["results"]] == [1, 0]
    assert fake.calls("/rerank") == 2


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(httpx.Headers({"retry-after": "3600"})) == 20.0  # capped
    soon = email.utils.formatdate(time.time() + 5, usegmt=True)
    waited = retry_after_seconds(httpx.Headers({"retry-after": soon}))
    assert waited is not None and 3.0 < waited <= 5.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


async def test_reranker_speaks_the_cohere_jina_protocol(fake: FakeOpenAIServer) -> None:
    fake.rerank_scorer = lambda query, doc: {"tea": 0.9, "coffee": 0.2, "water": 0.5}[doc]
    reranker = HTTPReranker(client(fake), "rerank-1")
    ranked = await reranker.rerank("a hot drink", ["coffee", "tea", "water"], top_n=2)
    assert [(r.index, r.score) for r in ranked] == [(1, 0.9), (2, 0.5)]
    (request,) = fake.requests_to("/rerank")
    assert request.body == {"model": "rerank-1", "query": "a hot drink",
                            "documents": ["coffee", "tea", "water"], "top_n": 2,
                            "return_documents": False}
    assert await reranker.rerank("nothing to rank", []) == []
    assert fake.calls("/rerank") == 1
