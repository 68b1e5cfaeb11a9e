"""Group commit: a partition's fetched commands are decided in order, each seeing the ones
before it, and stored in one transaction; any conflict stores nothing (the processor then
runs them one by one)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from bootstrap import ASSEMBLY
from commands.executor import execute, execute_group
from events.memory_store import InMemoryEventStore
from events.store import CommandAlreadyRecorded
from schemas.base import CommandEnvelope, CommandPayload
from schemas.platform import commands as pc

TENANT, ACTOR = uuid4(), uuid4()


def command(payload: CommandPayload, aggregate_id: UUID,
            tenant: UUID = TENANT) -> CommandEnvelope:
    return CommandEnvelope.of(payload, aggregate_id=aggregate_id, tenant_id=tenant,
                              actor_id=ACTOR, correlation_id=uuid4())


def test_later_commands_of_a_group_see_the_earlier_ones() -> None:
    store = InMemoryEventStore()
    app, other = uuid4(), uuid4()
    group = [
        command(pc.CreateApp(app_id=app, name="a", mode="chat"), app),
        command(pc.UpdateApp(app_id=app, name="renamed"), app),  # sees the create
        command(pc.CreateApp(app_id=app, name="again", mode="chat"), app),  # exists: refused
        command(pc.UpdateApp(app_id=other, name="x"), other),  # unknown app: refused
    ]
    outcomes = execute_group(store, ASSEMBLY.handlers, group)

    assert [o.status for o in outcomes] == ["accepted", "accepted", "rejected", "rejected"]
    assert [o.position for o in outcomes] == [1, 2, None, None]
    assert outcomes[1].aggregates == {app: ("App", 2)}
    assert [e.type for e in store.load(app)] == ["AppCreated", "AppUpdated"]
    # Stored exactly as returned, so a waiting caller reads the same.
    assert [store.outcome(c.command_id) for c in group] == outcomes


def test_a_group_holding_a_redelivered_command_stores_nothing() -> None:
    store = InMemoryEventStore()
    first = command(pc.CreateApp(app_id=(a := uuid4()), name="a", mode="chat"), a)
    execute(store, ASSEMBLY.handlers, first)
    fresh = command(pc.CreateApp(app_id=(b := uuid4()), name="b", mode="chat"), b)

    with pytest.raises(CommandAlreadyRecorded):
        execute_group(store, ASSEMBLY.handlers, [fresh, first])

    assert store.load(b) == [] and store.outcome(fresh.command_id) is None
    # One by one (the processor's fallback), each takes effect once.
    assert execute(store, ASSEMBLY.handlers, fresh).status == "accepted"
    assert execute(store, ASSEMBLY.handlers, first).position == 1
    assert [e.aggregate_id for e in store.read_from(0, 10)] == [a, b]


def test_a_command_delivered_twice_in_one_group_takes_effect_once() -> None:
    store = InMemoryEventStore()
    create = command(pc.CreateApp(app_id=(a := uuid4()), name="a", mode="chat"), a)
    outcomes = execute_group(store, ASSEMBLY.handlers, [create, create])
    assert outcomes[0] == outcomes[1] and outcomes[0].status == "accepted"
    assert len(store.load(a)) == 1
