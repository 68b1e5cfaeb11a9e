"""Read-model tables of workflow runs (Dify's `workflow_runs`, `workflow_node_executions`,
`workflow_app_logs`). Only the projectors in projections/workflow/runs/projectors.py write
them, from the events of the WorkflowRun aggregate."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, String, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB

from projections.tables import READ, metadata

workflow_runs = Table(
    "workflow_runs", metadata,
    Column("id", Uuid, primary_key=True),
    # the workspace the run's start was recorded in (a writer may record none: reads go by
    # app, so a run without one is shown, never refused)
    Column("tenant_id", Uuid, nullable=True),
    Column("app_id", Uuid, nullable=False),
    Column("workflow_id", Uuid, nullable=False),
    Column("version", String(255), nullable=False),  # the workflow version's string
    Column("sequence_number", Integer, nullable=False),  # 1, 2, ... per app, as Dify's
    Column("mode", String(32), nullable=False),  # workflow | advanced-chat
    Column("triggered_from", String(32), nullable=False),  # debugging | app-run
    # a single-node debug run's node: not in the run history (Dify's single step is no run)
    Column("node_id", Text, nullable=True),
    # running | paused | succeeded | partial-succeeded | failed | stopped
    Column("status", String(32), nullable=False),
    Column("inputs", JSONB, nullable=False),
    Column("outputs", JSONB, nullable=True),
    Column("outputs_ref", Text, nullable=True),  # a storage key when outputs were too large
    Column("error", Text, nullable=True),
    Column("elapsed_time", Float, nullable=False),
    Column("total_tokens", Integer, nullable=False),
    Column("total_steps", Integer, nullable=False),
    Column("exceptions_count", Integer, nullable=False),  # nodes that failed and went on
    Column("created_by_role", String(16), nullable=False),  # end_user | account
    Column("created_by", Uuid, nullable=True),  # the end user's or account's id
    Column("session_id", Text, nullable=False),  # the Service API's `user`
    Column("conversation_id", Uuid, nullable=True),  # advanced-chat
    Column("message_id", Uuid, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_workflow_runs_app_created", "app_id", "triggered_from", "created_at"),
    schema=READ,
)

workflow_node_executions = Table(
    "workflow_node_executions", metadata,
    Column("id", Uuid, primary_key=True),  # the execution id of node_started/node_finished
    Column("tenant_id", Uuid, nullable=True),  # the run's
    Column("app_id", Uuid, nullable=False),
    Column("workflow_id", Uuid, nullable=False),
    Column("workflow_run_id", Uuid, nullable=False),
    Column("index", Integer, nullable=False),
    Column("predecessor_node_id", Text, nullable=True),
    Column("node_id", Text, nullable=False),
    Column("node_type", String(64), nullable=False),
    Column("title", Text, nullable=False),  # as long as a DSL's: never refused
    Column("inputs", JSONB, nullable=True),
    Column("process_data", JSONB, nullable=True),
    Column("outputs", JSONB, nullable=True),
    Column("outputs_ref", Text, nullable=True),
    # running | paused | succeeded | exception | failed | retry | stopped
    Column("status", String(32), nullable=False),
    Column("error", Text, nullable=True),
    Column("elapsed_time", Float, nullable=False),
    Column("execution_metadata", JSONB, nullable=True),
    Column("retry_index", Integer, nullable=True),  # a failed attempt's row: 0, 1, ...
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_workflow_node_executions_run", "workflow_run_id", "index"),
    schema=READ,
)

# One entry per ended run of a workflow app outside debugging (Dify writes it when the run
# ends): what the logs pages list.
workflow_app_logs = Table(
    "workflow_app_logs", metadata,
    Column("id", Uuid, primary_key=True),  # schemas.workflow.naming.workflow_app_log_id_for
    Column("tenant_id", Uuid, nullable=True),  # the run's
    Column("app_id", Uuid, nullable=False),
    Column("workflow_id", Uuid, nullable=False),
    Column("workflow_run_id", Uuid, nullable=False),
    Column("created_from", String(32), nullable=False),  # service-api
    Column("created_by_role", String(16), nullable=False),
    Column("created_by", Uuid, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_workflow_app_logs_app_created", "app_id", "created_at"),
    schema=READ,
)
