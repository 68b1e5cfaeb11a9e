"""Read-side queries of workflow runs: one run, an app's runs (keyset pages), a run's node
executions, an app's run logs (numbered pages, filtered as Dify's logs pages are)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, Text, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from projections.page import Page
from projections.platform.tables import accounts
from projections.workflow.runs.tables import (
    workflow_app_logs,
    workflow_node_executions,
    workflow_runs,
)

KEYWORD_CHARS = 30  # Dify searches with the keyword's first 30 characters


def _with_creator(query: Select[Any]) -> Select[Any]:
    """The run's row with its creating account's name and email (null for an end user's)."""
    return query.add_columns(
        accounts.c.name.label("account_name"), accounts.c.email.label("account_email"),
    ).outerjoin(accounts, and_(workflow_runs.c.created_by_role == "account",
                               accounts.c.id == workflow_runs.c.created_by))


async def run(engine: AsyncEngine, app_id: UUID, run_id: UUID) -> dict[str, Any] | None:
    """The app's run; None for another app's."""
    async with engine.connect() as conn:
        row = (await conn.execute(_with_creator(select(workflow_runs)).where(
            workflow_runs.c.id == run_id, workflow_runs.c.app_id == app_id))).mappings().first()
    return dict(row) if row else None


def _history(app_id: UUID, triggered_from: str) -> list[Any]:
    """The app's runs of the run history: single-node debug runs are not in it."""
    return [workflow_runs.c.app_id == app_id, workflow_runs.c.triggered_from == triggered_from,
            workflow_runs.c.node_id.is_(None)]


async def list_runs(engine: AsyncEngine, app_id: UUID, *, triggered_from: str,
                    status: str | None, last_id: UUID | None, limit: int) -> Page | None:
    """Newest first, the page after `last_id` (Dify's console run history); `total` is 1
    when there are more. None: `last_id` is none of the app's runs."""
    where = _history(app_id, triggered_from)
    if status is not None:
        where.append(workflow_runs.c.status == status)
    async with engine.connect() as conn:
        if last_id is not None:
            last = (await conn.execute(select(workflow_runs.c.created_at, workflow_runs.c.id)
                                       .where(workflow_runs.c.app_id == app_id,
                                              workflow_runs.c.id == last_id))).first()
            if last is None:
                return None
            where.append(or_(workflow_runs.c.created_at < last[0],
                             and_(workflow_runs.c.created_at == last[0],
                                  workflow_runs.c.id < last[1])))
        rows = (await conn.execute(_with_creator(select(workflow_runs)).where(*where).order_by(
            workflow_runs.c.created_at.desc(), workflow_runs.c.id.desc()).limit(limit + 1))
        ).mappings().all()
    return Page(items=[dict(r) for r in rows[:limit]], total=int(len(rows) > limit))


async def count_runs(engine: AsyncEngine, app_id: UUID, *, triggered_from: str,
                     status: str | None, since: datetime | None) -> dict[str, int]:
    """How many of the app's runs are in each status (started `since`, if given)."""
    where = _history(app_id, triggered_from)
    if status is not None:
        where.append(workflow_runs.c.status == status)
    if since is not None:
        where.append(workflow_runs.c.created_at >= since)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(workflow_runs.c.status, func.count()).where(*where)
                                   .group_by(workflow_runs.c.status))).all()
    return {str(status): int(count) for status, count in rows}


async def node_executions(engine: AsyncEngine, run_id: UUID) -> list[dict[str, Any]]:
    """The run's node executions, latest first (Dify's order), a retried node's failed
    attempts after its execution's own row."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(workflow_node_executions).where(
            workflow_node_executions.c.workflow_run_id == run_id).order_by(
            workflow_node_executions.c.index.desc(),
            func.coalesce(workflow_node_executions.c.retry_index, 1 << 30).desc()))
        ).mappings().all()
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class LogFilter:
    """What Dify's logs pages filter on (each optional)."""

    keyword: str | None = None  # in the run's inputs, outputs or end user's session id
    status: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    session_id: str | None = None  # the end user's (`created_by_end_user_session_id`)
    account_id: UUID | None = None  # the account's (`created_by_account`, resolved)


def _log_conditions(app_id: UUID, f: LogFilter) -> list[Any]:
    where: list[Any] = [workflow_app_logs.c.app_id == app_id]
    if f.keyword:
        pattern = f"%{f.keyword[:KEYWORD_CHARS]}%"
        where.append(or_(cast(workflow_runs.c.inputs, Text).ilike(pattern),
                         cast(workflow_runs.c.outputs, Text).ilike(pattern),
                         and_(workflow_runs.c.created_by_role == "end_user",
                              workflow_runs.c.session_id.ilike(pattern))))
    if f.status:
        where.append(workflow_runs.c.status == f.status)
    if f.created_before:
        where.append(workflow_app_logs.c.created_at <= f.created_before)
    if f.created_after:
        where.append(workflow_app_logs.c.created_at >= f.created_after)
    if f.session_id:
        where.append(and_(workflow_runs.c.created_by_role == "end_user",
                          workflow_runs.c.session_id == f.session_id))
    if f.account_id:
        where.append(and_(workflow_runs.c.created_by_role == "account",
                          workflow_runs.c.created_by == f.account_id))
    return where


async def app_logs(engine: AsyncEngine, app_id: UUID, f: LogFilter, *, page: int,
                   limit: int) -> Page:
    """One numbered page of the app's run logs, newest first, each with its run's columns
    (prefixed `run_`) and its account's name and email; `total`: all that match."""
    joined = workflow_app_logs.join(workflow_runs,
                                    workflow_runs.c.id == workflow_app_logs.c.workflow_run_id)
    where = _log_conditions(app_id, f)
    run_columns = [c.label(f"run_{c.name}") for c in workflow_runs.c]
    query = _with_creator(select(workflow_app_logs, *run_columns).select_from(joined))
    async with engine.connect() as conn:
        total = await conn.scalar(select(func.count()).select_from(joined).where(*where))
        rows = (await conn.execute(query.where(*where).order_by(
            workflow_app_logs.c.created_at.desc(), workflow_app_logs.c.id.desc())
            .limit(limit).offset((page - 1) * limit))).mappings().all()
    return Page(items=[dict(r) for r in rows], total=int(total or 0))
