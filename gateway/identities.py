"""Each account's console identity (its name, the workspace its console works in, its role
there), kept per gateway process: every console request needs it, and reading it was a query
per request.

An entry is read from the account and its memberships, so it goes when a projection notice
names the account, the workspace it serves, or the workspace the account last switched to
(the memberships that decide which workspace that is); all go when the listener reconnected
(notices may have been missed) and when a read-model version changes state (reads may move
to another version). A read that a notice about one of those raced is not kept.
The notice follows the projection's commit, and a command's sender hears it before it
answers (followers are called before waiters), so once a removal or a role change has been
answered this gateway process serves it; another process within the notice's milliseconds.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from fastapi import Request

from gateway.deps import get_container
from projections.runner import PROJECTION_CHANNEL
from projections.tables import VERSIONS_CHANNEL

MAX_ENTRIES = 10_000  # past this many accounts, start over (a bound, not an eviction policy)
RECENT_NOTICES = 1_024  # a read that more notices overlapped than this is not kept


@dataclass(frozen=True)
class Identity:
    name: str
    tenant_id: UUID
    role: str


@dataclass
class ConsoleIdentities:
    entries: dict[UUID, Identity] = field(default_factory=dict)
    # an aggregate id (account, workspace) -> the accounts whose entry was read from it
    dependents: defaultdict[UUID, set[UUID]] = field(default_factory=lambda: defaultdict(set))
    # the aggregates of the latest notices, and how many notices were heard in all
    recent: deque[UUID] = field(default_factory=lambda: deque(maxlen=RECENT_NOTICES))
    heard: int = 0

    def get(self, account_id: UUID) -> Identity | None:
        return self.entries.get(account_id)

    def mark(self) -> int:
        """Taken before a read: `keep` refuses it if a notice about its sources came since."""
        return self.heard

    def keep(self, account_id: UUID, identity: Identity, sources: set[UUID],
             read_at: int) -> None:
        since = self.heard - read_at
        if since > len(self.recent):
            return  # more notices than remembered (or a gap) since the read began
        if since and not sources.isdisjoint(list(self.recent)[-since:]):
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.clear()
        self.entries[account_id] = identity
        for source in sources:
            self.dependents[source].add(account_id)

    def projected(self, payload: str) -> None:
        """A projection notice ("<projection>_v<n>:<aggregate id>:<version>")."""
        try:
            aggregate = UUID(payload.rsplit(":", 2)[1])
        except (IndexError, ValueError):
            return
        self.recent.append(aggregate)
        self.heard += 1
        for account_id in self.dependents.pop(aggregate, ()):
            self.entries.pop(account_id, None)

    def clear(self) -> None:
        self.entries.clear()
        self.dependents.clear()
        self.recent.clear()
        self.heard += RECENT_NOTICES + 1  # no read under way is kept


def console_identities(request: Request) -> ConsoleIdentities | None:
    """This process's cache; None without a notification listener (nothing would evict)."""
    state: Any = request.app.state
    cache: ConsoleIdentities | None = getattr(state, "console_identities", None)
    if cache is None:
        notifications = get_container(request).notifications
        if notifications is None:
            return None
        cache = state.console_identities = ConsoleIdentities()
        notifications.follow(PROJECTION_CHANNEL, cache.projected, cache.clear)
        notifications.follow(VERSIONS_CHANNEL, lambda _: cache.clear(), cache.clear)
    return cache
