"""A run's stored history read for the engine: the scheduler's facts (`workflow_graph.
scheduler.fold`) from the WorkflowRun's events, with large outputs loaded back from storage,
and the version's environment variables with their secrets opened (only into the pool: every
value recorded or streamed goes through `Secrets.mask`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson

from adapters.secrets import Keyring
from adapters.storage.base import Storage
from events.envelope import Envelope
from projections.workflow.environment import unsealed_environment
from schemas.base import EventPayload
from schemas.workflow import events as ev
from schemas.workflow.naming import SECRET_VALUE_TYPE
from workflow_graph.scheduler import Fact, NodeFailed, NodeStarted, NodeSucceeded, RunStarted

MASK = "******"


@dataclass(frozen=True)
class Secrets:
    """The plain values of a run's secret environment variables, to mask wherever a value
    leaves the engine (events, the task stream)."""

    values: tuple[str, ...] = ()

    def mask(self, value: Any) -> Any:
        if not self.values:
            return value
        if isinstance(value, str):
            for secret in self.values:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, Mapping):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask(v) for v in value]
        return value


@dataclass(frozen=True)
class Environment:
    values: Mapping[str, Any] = field(default_factory=dict)
    secrets: Secrets = Secrets()


def open_environment(variables: Sequence[Mapping[str, Any]], keyring: Keyring,
                     tenant_id: UUID | None) -> Environment:
    """`env.*` values of a version: secret ones unsealed with the workspace's key."""
    opened = unsealed_environment(keyring, tenant_id, variables)
    values = {str(v.get("name", "")): v.get("value") for v in opened}
    # an empty secret hides nothing (and masking "" would mask everything)
    secrets = [str(v["value"]) for v in opened
               if v.get("value_type") == SECRET_VALUE_TYPE and v.get("value")]
    # the longest first, so a secret containing another is masked whole
    return Environment(values, Secrets(tuple(sorted(secrets, key=len, reverse=True))))


def holds_secrets(variables: Sequence[Mapping[str, Any]]) -> bool:
    """Whether opening the variables unseals anything (a secret with a value): if not, the
    workspace's keyring need not be read."""
    return any(v.get("value_type") == SECRET_VALUE_TYPE and v.get("value") for v in variables)


def conversation_defaults(variables: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {str(v.get("name", "")): v.get("value") for v in variables}


async def outputs_of(storage: Storage, p: ev.WorkflowNodeSucceeded) -> Mapping[str, Any]:
    if p.outputs_ref is None:
        return p.outputs
    return orjson.loads(await storage.load(p.outputs_ref))  # type: ignore[no-any-return]


async def facts_of(history: Sequence[Envelope[EventPayload]], storage: Storage,
                   environment: Mapping[str, Any],
                   conversation: Mapping[str, Any]) -> list[Fact]:
    """The scheduler's facts of a stored history (its retries, pauses and submissions are
    the engine's business, not the scheduler's)."""
    began = active_since(history)
    refs = [e.payload for e in history if isinstance(e.payload, ev.WorkflowNodeSucceeded)
            and e.payload.outputs_ref is not None]
    loaded = dict(zip([p.outputs_ref for p in refs],
                      await asyncio.gather(*(outputs_of(storage, p) for p in refs)),
                      strict=True))
    facts: list[Fact] = []
    for event in history:
        p = event.payload
        if isinstance(p, ev.WorkflowRunStarted):
            facts.append(RunStarted(inputs=p.inputs, system=p.system, environment=environment,
                                    conversation=conversation, at=began))
        elif isinstance(p, ev.WorkflowNodeStarted):
            facts.append(NodeStarted(p.node_id))
        elif isinstance(p, ev.WorkflowNodeSucceeded):
            outputs = loaded[p.outputs_ref] if p.outputs_ref is not None else p.outputs
            facts.append(NodeSucceeded(p.node_id, outputs, p.handle, p.updates))
        elif isinstance(p, ev.WorkflowNodeFailed):
            facts.append(NodeFailed(p.node_id, p.error, p.error_type))
    return facts


def active_since(history: Sequence[Envelope[EventPayload]]) -> float:
    """When the run started, moved later by the time it spent paused (waiting for a human
    does not count against WORKFLOW_MAX_EXECUTION_TIME)."""
    began = history[0].occurred_at.timestamp()
    paused_at: float | None = None
    for event in history:
        if isinstance(event.payload, ev.WorkflowRunPaused):
            paused_at = event.occurred_at.timestamp()
        elif isinstance(event.payload, ev.WorkflowHumanInputSubmitted
                        | ev.WorkflowHumanInputTimedOut) and paused_at is not None:
            began += event.occurred_at.timestamp() - paused_at
            paused_at = None
    return began
