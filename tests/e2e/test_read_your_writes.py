"""A command's answer waits for its own aggregates to be projected, nothing else: an
aggregate stuck elsewhere in the projection (here: an event whose predecessor the store
does not have, which can never be applied) does not slow other writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import uuid4

from adapters.embedded.postgres import EmbeddedPostgres
from events.envelope import Envelope
from schemas.platform.events import AppUpdated
from tests.harness import node_settings, running_node


async def test_a_stuck_aggregate_does_not_slow_other_writes(
        postgres: EmbeddedPostgres, fresh_database: Callable[..., str], redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("ryw"), redis_url,
                             PROJECTION_WAIT_SECONDS=10, CONSUMER_MAX_ATTEMPTS=2)
    async with running_node(settings) as node:
        auth = await node.setup_and_login()
        stuck = Envelope.new(
            AppUpdated(name="x", description="", icon_type="emoji", icon="🤖",
                       icon_background="#FFEAD5", updated_by=uuid4()),
            aggregate_type="App", aggregate_id=uuid4(), aggregate_version=2, tenant_id=uuid4(),
            correlation_id=uuid4(), causation_id=uuid4())
        node.container.store.append([stuck])  # version 1 never existed: unprojectable

        started = time.monotonic()
        created = await node.client.post("/console/api/apps", headers=auth,
                                         json={"name": "unhindered", "mode": "chat"})
        assert created.status_code == 201, created.text  # not 202 after the wait
        assert time.monotonic() - started < 5
        projections = (await node.client.get("/status.json", headers=auth)).json()[
            "dependencies"]["projections"]
        # it is stuck: still retried (lag), or already parked for an operator (waiting)
        assert projections["lag"]["console_v1"] + projections.get(
            "waiting", {}).get("console_v1", 0) >= 1
