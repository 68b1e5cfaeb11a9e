"""Benchmark: embedding chunks per second per core, for every local model Eddy ships, as
ratios against all-MiniLM-L6-v2 measured in the same run.

Two fixed chunk sets, cut exactly as the indexing worker cuts a text upload (bench.indexing's
rule, each model counting its own tokens): English operations notes (bench.indexing's
corpus) and Chinese ones built the same way from Chinese phrases. Each model embeds each set
in batches of 32 after loading (loading is not timed), on one BLAS thread: chunks per CPU
second is chunks/s per core, which a shared machine disturbs far less than wall time.

    python -m bench.embeddings [--documents 6] [--repeat 2]

--repeat runs each measurement that many times and keeps the fastest (the least disturbed).
"""

from __future__ import annotations

import os

# One BLAS thread per process, before numpy loads: "per core" means one core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from adapters.embeddings.local_minilm import LocalMiniLM
from adapters.embeddings.local_use import LocalUSE
from bench.indexing import EMBED_BATCH, chunk_text, corpus, generated_texts

_ZH_SUBJECTS = ("仓库管理员", "财务部门", "值班工程师", "客服团队", "图书馆员", "数据中心的员工",
                "市场部的同事", "安全委员会", "新来的实习生", "北方办公室")
_ZH_VERBS = ("检查", "更新", "审批", "整理", "发布", "记录", "比较", "翻译", "维修", "归档")
_ZH_OBJECTS = ("季度安全清单", "备用发电机", "退款申请", "冬季时刻表", "访客调查结果", "冷却系统",
               "未付发票清单", "消防通道", "新的贷款政策", "灯塔日志", "回收数据", "入职指南")
_ZH_TAILS = ("在每个月底之前", "每当天气变化的时候", "在每次发布之后", "并和所有人分享笔记",
             "因为监管机构有这个要求", "趁大楼还很安静的时候", "并在共享档案里留一份副本",
             "每年至少两次", "为了让保险费保持在较低水平", "远在旺季开始之前")


def _chinese_paragraph(rng: random.Random) -> str:
    return "".join(
        f"{rng.choice(_ZH_SUBJECTS)}{rng.choice(_ZH_TAILS)}{rng.choice(_ZH_VERBS)}"
        f"{rng.choice(_ZH_OBJECTS)}。" for _ in range(rng.randint(3, 6)))


def chinese_corpus(documents: int, seed: int = 2024) -> list[str]:
    """`documents` Chinese texts of 1-2 thousand characters, the same every run."""
    return generated_texts(documents, lambda i: f"运营笔记 第 {i + 1} 卷", _chinese_paragraph,
                           (1000, 2000), seed)


class Model(Protocol):
    MODEL_NAME: str
    DIMENSIONS: int

    def count_tokens(self, text: str) -> int: ...

    def warm_up(self) -> None: ...

    def embed_sync(self, texts: Sequence[str]) -> object: ...


@dataclass
class Measurement:
    model: str
    language: str
    chunks: int
    tokens: int
    wall: float
    cpu: float

    @property
    def per_core(self) -> float:
        return self.chunks / self.cpu


def measure(model: Model, language: str, texts: list[str], repeat: int) -> Measurement:
    chunks = [c for i, t in enumerate(texts)
              for c in chunk_text(t.encode(), f"doc-{i:03d}.txt", model.count_tokens)]
    tokens = sum(model.count_tokens(c) for c in chunks)
    best: tuple[float, float] | None = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(chunks), EMBED_BATCH):
            model.embed_sync(chunks[start:start + EMBED_BATCH])
        run = (time.perf_counter() - wall, time.process_time() - cpu)
        best = run if best is None or run[1] < best[1] else best
    assert best is not None
    return Measurement(model.MODEL_NAME, language, len(chunks), tokens, *best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.documents < 1 or args.repeat < 1:
        parser.error("--documents and --repeat must be >= 1")

    models: list[Callable[[], Model]] = [LocalMiniLM, lambda: LocalUSE(threads=1)]
    sets = {"English": corpus(args.documents), "Chinese": chinese_corpus(args.documents)}
    results: list[Measurement] = []
    for build in models:
        model = build()
        model.warm_up()
        for language, texts in sets.items():
            result = measure(model, language, texts, args.repeat)
            results.append(result)
            print(f"  {result.model} ({model.DIMENSIONS} dims), {language}: {result.chunks} "
                  f"chunks ({result.tokens / result.chunks:.0f} of its tokens each) in "
                  f"{result.wall:.2f} s wall, {result.cpu:.2f} s CPU", flush=True)

    baseline = {r.language: r for r in results if r.model == LocalMiniLM.MODEL_NAME}
    print(f"\nchunks/s per core (one BLAS thread; fastest of {args.repeat}), "
          f"ratio against {LocalMiniLM.MODEL_NAME} in this run; load average now "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'model':44} {'language':8} {'chunks/s/core':>13} {'x MiniLM':>9}")
    for r in results:
        print(f"{r.model:44} {r.language:8} {r.per_core:13.1f} "
              f"{r.per_core / baseline[r.language].per_core:9.2f}")


if __name__ == "__main__":
    main()
