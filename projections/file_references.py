"""What names a stored file, across contexts, for Dify's file clean-ups (`eddy
remove-orphaned-files-on-storage`, `eddy clear-orphaned-file-records`): the upload records,
the documents whose blobs live under their prefix, and every file id a message, a
conversation or a workflow run mentions (found as Dify finds them: any UUID in those
columns' text)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Text, cast, func, select, union
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.conversation.tables import conversations, messages, upload_files
from projections.knowledge.tables import documents
from projections.workflow.runs.tables import workflow_node_executions, workflow_runs

_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

# Where a message, a conversation or a run may carry an uploaded file's id.
REFERENCING_COLUMNS = (messages.c.inputs, messages.c.files, conversations.c.inputs,
                       workflow_runs.c.inputs, workflow_node_executions.c.inputs,
                       workflow_node_executions.c.process_data,
                       workflow_node_executions.c.outputs)


async def upload_records(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every upload record: id, tenant_id, key (where its bytes are)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(upload_files.c.id, upload_files.c.tenant_id,
                                          upload_files.c.key).order_by(upload_files.c.id))
                ).mappings().all()
    return [dict(r) for r in rows]


async def referenced_ids(engine: AsyncEngine) -> set[str]:
    """Every UUID (lowercase) the referencing columns' text holds (Postgres)."""
    found = union(*(select(func.lower(func.regexp_matches(
        cast(column, Text), _UUID, "g", type_=ARRAY(Text))[1]).label("id"))
        for column in REFERENCING_COLUMNS))
    async with engine.connect() as conn:
        return set((await conn.execute(found)).scalars())


async def document_folders(engine: AsyncEngine) -> set[tuple[UUID, UUID]]:
    """(dataset id, document id) of every document: its blobs live under its prefix."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(documents.c.dataset_id, documents.c.id))).all()
    return {(r[0], r[1]) for r in rows}
