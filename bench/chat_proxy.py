"""The baseline for bench/chat.py: a bare FastAPI streaming proxy, what a thin gateway in
front of a model does with none of Eddy's machinery. It calls the provider's streamed
chat completion in the request and re-emits each token as a Dify-style SSE `message` event,
then `message_end`; in blocking mode (`"response_mode": "blocking"`) it collects the tokens
and answers one JSON body, as Dify's blocking chat does. No database, no bus, no auth.
Configured by environment: BENCH_PROVIDER_URL (…/v1), BENCH_PROVIDER_KEY, BENCH_MODEL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response, StreamingResponse

from adapters.llm.openai_protocol import OpenAIProtocolClient

app = FastAPI()
client = OpenAIProtocolClient(os.environ.get("BENCH_PROVIDER_URL", ""),
                              os.environ.get("BENCH_PROVIDER_KEY", ""))
MODEL = os.environ.get("BENCH_MODEL", "")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat-messages")
async def chat(body: dict[str, Any]) -> Response:
    messages = [{"role": "user", "content": body["query"]}]
    if body.get("response_mode") == "blocking":
        answer = "".join([chunk.content async for chunk in client.stream_chat(MODEL, messages)
                          if chunk.content])
        return Response(orjson.dumps({"event": "message", "answer": answer}),
                        media_type="application/json")

    async def events() -> AsyncIterator[bytes]:
        async for chunk in client.stream_chat(MODEL, messages):
            if chunk.content:
                yield b"data: " + orjson.dumps({"event": "message",
                                                 "answer": chunk.content}) + b"\n\n"
        yield b"data: " + orjson.dumps({"event": "message_end"}) + b"\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
