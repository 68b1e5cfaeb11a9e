"""The contexts' registries are complete and unambiguous: every command type has exactly one
handler, every event a projection follows has a projector or an explicit "ignored" entry,
every aggregate type belongs to a context, and a forgotten registration fails loudly."""

from __future__ import annotations

from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from bootstrap import ASSEMBLY
from commands.aggregate import Aggregate
from commands.registry import CommandHandlers, command_handlers
from commands.unit_of_work import UnitOfWork
from contexts import CONTEXTS
from contexts.manifest import ContextManifest, assemble
from events.envelope import Envelope
from events.memory_store import InMemoryEventStore
from projections.registry import Projection, projectors
from projections.runner import ProjectionRunner, UnhandledEvent
from schemas.base import CommandPayload, EventPayload
from schemas.knowledge import events as kev
from schemas.platform import commands as pcmd
from schemas.platform import events as pev


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found | {s for c in found for s in _all_subclasses(c)}


def test_every_command_type_has_exactly_one_handler() -> None:
    commands = {c.command_type for c in _all_subclasses(CommandPayload)}
    assert commands == set(ASSEMBLY.handlers.by_name)


def test_a_second_handler_for_a_command_is_refused() -> None:
    def create_app(c: pcmd.CreateApp, uow: UnitOfWork) -> dict[str, object]:
        return {}

    def create_app_again(c: pcmd.CreateApp, uow: UnitOfWork) -> dict[str, object]:
        return {}

    with pytest.raises(ValueError, match="CreateApp has two handlers"):
        command_handlers(create_app, create_app_again)
    with pytest.raises(ValueError, match="CreateApp is handled in two contexts"):
        CommandHandlers([command_handlers(create_app), command_handlers(create_app_again)])


def test_every_event_type_is_declared_by_one_context() -> None:
    declared = [e for c in CONTEXTS for e in c.events]
    assert len(declared) == len(set(declared))
    assert set(declared) == _all_subclasses(EventPayload)


def test_every_aggregate_type_belongs_to_a_context() -> None:
    aggregates = {a.type_name for a in _all_subclasses(Aggregate) if not a.abstract}
    assert aggregates == set(ASSEMBLY.routing.topic_of_aggregate)


def test_every_event_type_is_applied_by_an_aggregate() -> None:
    applied = {name.removeprefix("apply_") for a in _all_subclasses(Aggregate)
               for name in vars(a) if name.startswith("apply_")}
    assert applied == set(ASSEMBLY.event_types.by_name)


@pytest.mark.parametrize("name", sorted(ASSEMBLY.projections))
def test_projections_project_or_ignore_every_event_of_their_contexts(name: str) -> None:
    projection = ASSEMBLY.projections[name]
    followed = [c for c in CONTEXTS if c.topic in projection.topics]
    missing = [e.event_type for c in followed for e in c.events if not projection.follows(e)]
    assert missing == []
    assert set(projection.aggregate_types) == {a.type_name for c in followed
                                               for a in c.aggregates}


def test_a_projector_declared_twice_is_refused() -> None:
    async def project(conn: object, e: Envelope[pev.AppDeleted]) -> None: ...

    async def project_again(conn: object, e: Envelope[pev.AppDeleted]) -> None: ...

    with pytest.raises(ValueError, match="two projectors"):
        projectors(project, project_again)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="declared by two contexts"):
        Projection.merge("p", [], [], [projectors(project),  # type: ignore[arg-type]
                                       projectors(ignore=[pev.AppDeleted])])


async def test_the_runner_refuses_an_event_it_has_no_entry_for() -> None:
    # Nothing is written: the check comes before any connection (none could be made here).
    unreachable = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    runner = ProjectionRunner(engine=unreachable, projection=Projection(
        "p", topics=[], aggregate_types=["Tag"], ignored=frozenset({kev.TagNameClaimed})),
        store=InMemoryEventStore(), name="p_v1")
    event = Envelope.new(kev.TagDeleted(), aggregate_type="Tag", aggregate_id=uuid4(),
                         aggregate_version=1, tenant_id=None, correlation_id=uuid4(),
                         causation_id=uuid4()).at(1)
    with pytest.raises(UnhandledEvent, match="TagDeleted"):
        await runner.apply(event)


def test_an_aggregate_in_two_contexts_is_refused() -> None:
    twin = ContextManifest(name="twin", aggregates=CONTEXTS[0].aggregates, events=[],
                           upcasters={}, handlers=[], projectors={})
    with pytest.raises(ValueError, match="in two contexts"):
        assemble([CONTEXTS[0], twin])


def test_topics_cover_every_context_and_work_topic_with_dead_letters() -> None:
    names = {t.name for t in ASSEMBLY.topics(4, 8)}
    for context in CONTEXTS:
        for topic in (context.topic, *context.work_topics):
            assert {topic, topic + ".dlq"} <= names
    assert {"commands", "commands.dlq"} <= names
