"""A workflow run's server-sent events, in Dify's shapes (`ChunkWorkflowEvent` of
docs/dify/openapi_service.json; an advanced-chat run's also name its conversation and
message, as `ChunkChatEvent`s do): what the engine writes on the run's task stream, and what
the gateway answers for a run whose stream expired."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from schemas.conversation.naming import FACT_FIELD


@dataclass(frozen=True)
class StreamHead:
    """What every event of the run carries."""

    task_id: UUID
    run_id: UUID
    workflow_id: UUID
    mode: str
    created_at: int  # the run's start
    conversation_id: UUID | None = None
    message_id: UUID | None = None

    def event(self, name: str, data: Mapping[str, Any] | None = None,
              fact: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"event": name, "task_id": str(self.task_id),
                               "workflow_run_id": str(self.run_id)}
        if self.mode == "advanced-chat" and self.message_id is not None:
            out.update(conversation_id=str(self.conversation_id),
                       message_id=str(self.message_id), created_at=self.created_at)
        if data is not None:
            out["data"] = dict(data)
        if fact is not None:
            out[FACT_FIELD] = fact
        return out

    def workflow_started(self, inputs: Mapping[str, Any], reason: str,
                         fact: int) -> dict[str, Any]:
        return self.event("workflow_started", {
            "id": str(self.run_id), "workflow_id": str(self.workflow_id),
            "inputs": dict(inputs), "created_at": self.created_at, "reason": reason}, fact)

    def workflow_finished(self, *, status: str, outputs: Mapping[str, Any] | None,
                          error: str | None, elapsed_time: float, total_tokens: int,
                          total_steps: int, finished_at: int, fact: int | None,
                          exceptions_count: int | None = None) -> dict[str, Any]:
        return self.event("workflow_finished", {
            "id": str(self.run_id), "workflow_id": str(self.workflow_id), "status": status,
            "outputs": None if outputs is None else dict(outputs), "error": error,
            "elapsed_time": elapsed_time, "total_tokens": total_tokens,
            "total_steps": total_steps, "created_at": self.created_at,
            "finished_at": finished_at, "exceptions_count": exceptions_count, "files": []},
            fact)


def node_fields(*, node_id: str, node_type: str, title: str, execution_id: UUID, index: int,
                predecessor: str | None, created_at: int) -> dict[str, Any]:
    return {"id": str(execution_id), "node_id": node_id, "node_type": node_type,
            "title": title, "index": index, "predecessor_node_id": predecessor,
            "created_at": created_at, "iteration_id": None, "loop_id": None}


def node_finished_fields(*, status: str, inputs: Mapping[str, Any],
                         process_data: Mapping[str, Any], outputs: Mapping[str, Any] | None,
                         error: str | None, elapsed_time: float,
                         usage: Mapping[str, Any] | None, finished_at: int) -> dict[str, Any]:
    tokens = int((usage or {}).get("total_tokens") or 0)
    return {"status": status, "inputs": dict(inputs), "process_data": dict(process_data),
            "outputs": None if outputs is None else dict(outputs), "error": error,
            "elapsed_time": elapsed_time, "finished_at": finished_at, "files": [],
            "execution_metadata": {"total_tokens": tokens, "total_price": 0.0,
                                   "currency": "USD"} if usage else None}
