"""What a node executor is: an async function from a `NodeCall` to a `NodeResult`, raising
`NodeError` when the node fails (the engine then applies the node's error strategy: retry,
default value, fail branch, or the run fails).

Executors are registered by node type in `workers/workflow/nodes/__init__.py`. They never
record events or write the task stream themselves: the engine records each result before
anything that depends on it starts, and streams what executors `emit`. An executor with an
outside effect passes `call.idempotency_key` along (the same on every retry and takeover)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.kv.base import KeyValueStore
from adapters.storage.base import Storage
from config import Settings
from workflow_graph.graph import DEFAULT_SOURCE_HANDLE, PLUGIN_NODE_TYPES, Graph, Node
from workflow_graph.scheduler import Fact
from workflow_graph.variables import VariablePool


class NodeError(Exception):
    """The node failed; `error_type` is Dify's (shown in node_finished and the run's logs)."""

    def __init__(self, message: str, error_type: str = "NodeError") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type


def unsupported(node: Node) -> NodeError:
    """Why a node whose type has no executor fails (tool and agent nodes need plugins)."""
    if node.type in PLUGIN_NODE_TYPES:
        provider = next((str(node.data[k]) for k in (
            "provider_id", "provider_name", "agent_strategy_provider_name", "plugin_id")
            if isinstance(node.data.get(k), str) and node.data[k]), "unknown provider")
        return NodeError(f"{node.type} node {node.title or node.id!r} needs a plugin "
                         f"({provider}) that is not installed", "PluginNotInstalled")
    return NodeError(f"node type {node.type!r} cannot run here", "NodeTypeNotSupported")


class StepLimitReached(NodeError):
    """WORKFLOW_MAX_EXECUTION_STEPS reached inside a container's body: the run fails, whatever
    the container's error handling (an iteration's continue-on-error does not swallow it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Max steps {limit} reached.", "WorkflowStepLimitError")


@dataclass
class StepBudget:
    """The run's WORKFLOW_MAX_EXECUTION_STEPS, shared by the nodes of every scope: the engine
    passes `used` = the run's steps so far, containers take one per body node they start
    (nested and parallel steps share the one budget)."""

    limit: int
    used: int = 0

    def take(self) -> int:
        """Count one more node started; its execution index (1-based) in the run."""
        if self.used >= self.limit:
            raise StepLimitReached(self.limit)
        self.used += 1
        return self.used


@dataclass(frozen=True)
class NodeResult:
    outputs: Mapping[str, Any] = field(default_factory=dict)
    handle: str = DEFAULT_SOURCE_HANDLE  # a branch node's chosen out-edge handle
    inputs: Mapping[str, Any] = field(default_factory=dict)  # shown in logs (node_finished)
    process_data: Mapping[str, Any] = field(default_factory=dict)
    # variables of other scopes written (variable-assigner: {"conversation": {name: value}})
    updates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    usage: Mapping[str, Any] | None = None  # Dify's LLM usage when the node called a model


@dataclass(frozen=True)
class RunInfo:
    """The run a node executes in."""

    run_id: UUID
    task_id: UUID
    app_id: UUID
    tenant_id: UUID
    workflow_id: UUID
    mode: str  # "workflow" | "advanced-chat"
    user: str
    end_user_id: UUID | None
    conversation_id: UUID | None = None
    message_id: UUID | None = None
    call_depth: int = 0  # WORKFLOW_CALL_MAX_DEPTH
    inputs: Mapping[str, Any] = field(default_factory=dict)  # the run's (the start node's)


class NodeServices(Protocol):
    """What executors may use, wired once by the engine's processor factory."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> AsyncEngine: ...  # read models (datasets, models, conversations)

    @property
    def kv(self) -> KeyValueStore: ...

    @property
    def storage(self) -> Storage: ...

    # Further members (the model resolver, the retriever, the code sandbox, the HTTP client)
    # are added by the executors that need them, with their types, on the engine's
    # services dataclass (workers/workflow/services.py).


class BodyJournal(Protocol):
    """Where the facts of a container's body are recorded, by body scope (the engine: events
    of the run carrying the scope). A member that takes the run over replays a body's
    recorded facts: finished body nodes never run again, only those left in flight do. The
    engine counts recorded body starts in the step budget it passes."""

    def recorded(self, scope: str) -> Sequence[Fact]: ...

    async def record(self, scope: str, fact: Fact) -> None: ...

    async def forget(self, scope: str) -> None:
        """Drop a scope's facts: a failed pass runs anew when its container runs again."""


# Streams an event of the node to the run's task stream: ("text_chunk", {"text": ...}) for an
# LLM node's tokens, ("iteration_next", {...}) for a container's steps.
Emit = Callable[[str, Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class NodeCall:
    node: Node
    graph: Graph  # the whole graph (containers run their body nodes from it)
    pool: VariablePool
    run: RunInfo
    services: Any  # workers/workflow/services.py's WorkflowServices (NodeServices and more)
    idempotency_key: str
    emit: Emit
    # node type -> executor: how containers (iteration, loop) execute their body's nodes
    executors: Mapping[str, Executor]
    attempt: int = 0
    # inside an iteration/loop: its index path, part of the idempotency key of body nodes
    scope: str = ""
    # the run's step budget; None: a container starts one from WORKFLOW_MAX_EXECUTION_STEPS
    steps: StepBudget | None = None
    # where body facts are recorded for a takeover; None: a container reruns its body
    journal: BodyJournal | None = None


Executor = Callable[[NodeCall], Awaitable[NodeResult]]


class HumanInputRequired(Exception):
    """Raised by the human-input executor: the engine records the run paused at this node
    (`WorkflowRunPaused` with a new form token), streams `human_input_required` and
    `workflow_paused`, and lets the run's message go (no worker is held). When the form is
    submitted (or times out), the engine records the node's result from the submission
    without running the executor again (`human_input.result_of_answer`: the submitted
    inputs and Dify's `action_id` / `__action_id`; handle: the action, or "timeout")."""

    def __init__(self, form: Mapping[str, Any], timeout_seconds: float) -> None:
        super().__init__("waiting for human input")
        self.form = form
        self.timeout_seconds = timeout_seconds
