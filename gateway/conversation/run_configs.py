"""Each app's configuration with the model that answers for it, kept per gateway process:
every message needs them before it is sent, and reading them (two queries, credentials
opened) cost a loaded gateway more than anything else it does before publishing.

An entry goes when a projection notice names what it was read from (the app, its config,
its workspace: models and credentials are the workspace's), and all go when the listener
reconnected (notices may have been missed). A read that raced an eviction is not kept.
Another gateway process may answer from the old configuration for as long as the notice
takes to reach it (milliseconds); the chat processor resolves the model again anyway.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from fastapi import Request

from gateway.deps import get_container
from projections.runner import PROJECTION_CHANNEL
from schemas.conversation.config import AppModelConfig
from schemas.conversation.naming import app_config_id_for

MAX_ENTRIES = 10_000  # past this many apps, start over (a bound, not an eviction policy)


@dataclass
class RunConfigs:
    entries: dict[UUID, AppModelConfig] = field(default_factory=dict)
    # an aggregate id (app, app config, workspace) -> the apps whose entry was read from it
    dependents: defaultdict[UUID, set[UUID]] = field(default_factory=lambda: defaultdict(set))
    generation: int = 0  # moves on every eviction: a read begun before it is not kept

    def get(self, app_id: UUID) -> AppModelConfig | None:
        return self.entries.get(app_id)

    def keep(self, app_id: UUID, tenant_id: UUID, config: AppModelConfig,
             read_at_generation: int) -> None:
        if read_at_generation != self.generation:
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.clear()
        self.entries[app_id] = config
        for source in (app_id, app_config_id_for(app_id), tenant_id):
            self.dependents[source].add(app_id)

    def projected(self, payload: str) -> None:
        """A projection notice ("<projection>_v<n>:<aggregate id>:<version>")."""
        try:
            aggregate = UUID(payload.rsplit(":", 2)[1])
        except (IndexError, ValueError):
            return
        apps = self.dependents.pop(aggregate, None)
        if apps:
            self.generation += 1
            for app_id in apps:
                self.entries.pop(app_id, None)

    def clear(self) -> None:
        self.generation += 1
        self.entries.clear()
        self.dependents.clear()


def run_configs(request: Request) -> RunConfigs | None:
    """This process's cache; None without a notification listener (nothing would evict)."""
    state: Any = request.app.state
    cache: RunConfigs | None = getattr(state, "run_configs", None)
    if cache is None:
        notifications = get_container(request).notifications
        if notifications is None:
            return None
        cache = state.run_configs = RunConfigs()
        notifications.follow(PROJECTION_CHANNEL, cache.projected, cache.clear)
    return cache
