"""Work topics of the knowledge context: the indexing lanes and cleanup (Dify's `dataset`,
`priority_dataset` queues and the deletion tasks)."""

from __future__ import annotations

INDEXING_PRIORITY = "indexing.priority"  # small and interactive jobs: never behind a backlog
INDEXING_BULK = "indexing.bulk"
CLEANUP = "cleanup"
