"""How any command runs: once despite redelivery, rejected when unknown or invalid,
refused under another aggregate's id."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from bootstrap import ASSEMBLY
from commands.executor import execute
from events.store import CommandOutcome
from schemas.base import CommandEnvelope
from schemas.platform import commands as pc
from tests.unit.handlers.harness import (
    World,
)

# =========================================================================================
# running commands
# =========================================================================================


def test_a_redelivered_command_takes_effect_once(world: World) -> None:
    app_id = uuid4()
    command = CommandEnvelope.of(pc.CreateApp(app_id=app_id, name="Once", mode="chat"),
                                 aggregate_id=app_id, tenant_id=world.me.tenant_id,
                                 actor_id=world.me.actor_id, correlation_id=uuid4())
    first = execute(world.store, ASSEMBLY.handlers, command)
    again = execute(world.store, ASSEMBLY.handlers, command)
    assert again == first and first.status == "accepted"
    assert [e.type for e in world.store.load(app_id)] == ["AppCreated"]


def test_unknown_commands_and_invalid_payloads_are_rejected(world: World) -> None:
    def send(type_: str, payload: dict[str, Any]) -> CommandOutcome:
        return execute(world.store, ASSEMBLY.handlers, CommandEnvelope(
            command_id=uuid4(), type=type_, aggregate_id=uuid4(),
            tenant_id=world.me.tenant_id, actor_id=world.me.actor_id,
            correlation_id=uuid4(), payload=payload))

    unknown = send("LaunchRocket", {})
    assert unknown.status == "rejected" and unknown.error == {
        "code": "invalid_param", "status": 400,
        "message": "Unknown command type 'LaunchRocket'."}
    invalid = send("CreateApp", {"app_id": str(uuid4()), "name": "x", "mode": "spaceship"})
    assert invalid.status == "rejected" and invalid.error is not None
    assert (invalid.error["code"], invalid.error["status"]) == ("invalid_param", 400)
    assert world.store.max_position() == 0


def test_creating_under_an_id_of_another_kind_is_refused(world: World) -> None:
    dataset_id = world.dataset()
    ran = world.execute(pc.CreateApp(app_id=dataset_id, name="Clash", mode="chat"))
    # Accepted-with-nothing-stored would tell the caller the app exists when it does not.
    assert ran.outcome.status == "rejected"
