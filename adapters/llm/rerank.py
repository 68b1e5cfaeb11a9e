"""Reranking over the `/rerank` HTTP protocol of Cohere and Jina, which Xinference, TEI,
vLLM, LocalAI and LiteLLM also speak:

    POST {base}/rerank {"model", "query", "documents": [text, ...], "top_n"}
    -> {"results": [{"index": i, "relevance_score": s}, ...]}

Sent through the OpenAI-protocol client, so retries, timeouts and typed errors are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapters.llm.openai_protocol import OpenAIProtocolClient, ProviderUnavailableError


@dataclass(frozen=True)
class Ranked:
    index: int  # into the documents sent
    score: float  # the model's relevance score, higher is better


class HTTPReranker:
    def __init__(self, client: OpenAIProtocolClient, model: str) -> None:
        self._client = client
        self.model = model

    async def rerank(self, query: str, documents: Sequence[str],
                     top_n: int | None = None) -> list[Ranked]:
        """The documents' ranks, best first (at most `top_n`)."""
        if not documents:
            return []
        answer = await self._client.post_json("rerank", {
            "model": self.model, "query": query, "documents": list(documents),
            "top_n": min(top_n or len(documents), len(documents)), "return_documents": False})
        try:
            ranked = [Ranked(int(r["index"]), float(r["relevance_score"]))
                      for r in answer["results"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailableError(f"malformed rerank response: {exc!r}") from exc
        if any(not 0 <= r.index < len(documents) for r in ranked) or \
                len({r.index for r in ranked}) != len(ranked):
            raise ProviderUnavailableError("rerank response names documents it was not sent")
        return sorted(ranked, key=lambda r: -r.score)[:top_n]

    async def aclose(self) -> None:
        await self._client.aclose()
