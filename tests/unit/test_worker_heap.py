"""Which processes bound glibc's heap (`cli._bound_heap`): every one but a worker that runs
the indexing lanes alone, where the local model's passes are nearly all the work and the
bound cost 15-30% more CPU (README, Benchmarks, bench.indexing)."""

from __future__ import annotations

import pytest

from cli import _indexing_only


@pytest.mark.parametrize(("roles", "unbounded"), [
    (["knowledge.indexing-bulk", "knowledge.indexing-priority"], True),
    (["knowledge.indexing-bulk"], True),
    (["knowledge.indexing-priority"], True),
    (["knowledge.indexing-bulk", "projections"], False),  # projections share its heap
    (["conversation.chat"], False),
    ([], False),
    (None, False),  # no --roles: every role in one process
])
def test_only_a_worker_of_the_indexing_lanes_alone_keeps_the_default_heap(
        roles: list[str] | None, unbounded: bool) -> None:
    assert _indexing_only(roles) is unbounded
