"""The platform context: one-time setup, accounts, workspaces, apps and their API keys."""

from __future__ import annotations

from commands.platform import aggregates, handlers
from contexts.manifest import ContextManifest, payloads_in
from gateway.platform import (
    account,
    console,
    members,
    models,
    owner_transfer,
    service,
    workspaces,
)
from projections.platform import projectors
from projections.tables import PROJECTION_NAME
from schemas.platform import events

PLATFORM = ContextManifest(
    name="platform",
    aggregates=[aggregates.Setup, aggregates.Account, aggregates.EmailClaim,
                aggregates.Workspace, aggregates.App,
                aggregates.ApiKey],
    events=payloads_in(events),
    upcasters=events.UPCASTERS,
    handlers=[handlers.HANDLERS],
    projectors={PROJECTION_NAME: [projectors.PROJECTORS]},
    routers=[console.router, service.router, models.router, models.service_router,
             workspaces.router, members.router, account.router, owner_transfer.router],
)
