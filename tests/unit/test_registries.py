"""The contexts' registries are complete and unambiguous: every command type has exactly one
handler, every event a projection follows has a projector or an explicit "ignored" entry,
every aggregate type belongs to a context, and a forgotten registration fails loudly.
Manifests that contradict each other are refused by `assemble`, naming the culprit."""

from __future__ import annotations

from types import SimpleNamespace
from uuid import uuid4

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from bootstrap import ASSEMBLY
from commands.aggregate import Aggregate
from commands.registry import CommandHandlers, command_handlers
from commands.unit_of_work import UnitOfWork
from contexts import CONTEXTS
from contexts.manifest import ContextManifest, assemble
from events.envelope import Envelope
from events.memory_store import InMemoryEventStore
from events.routing import Route
from projections.registry import Projection, projectors
from projections.runner import ProjectionRunner, UnhandledEvent
from schemas.base import CommandPayload, EventPayload
from schemas.knowledge import events as kev
from schemas.platform import commands as pcmd
from schemas.platform import events as pev
from workers.declarations import Job, WorkTopic
from workers.node import all_roles, work_processor
from workers.runtime import Processor
from workers.scheduler import run_job


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
        Projection.merge("p", MetaData(), [], [],
                         [projectors(project),  # type: ignore[arg-type]
                          projectors(ignore=[pev.AppDeleted])])


async def test_the_runner_refuses_an_event_it_has_no_entry_for() -> None:
    # Nothing is written: the check comes before any connection (none could be made here).
    unreachable = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    runner = ProjectionRunner(engine=unreachable, projection=Projection(
        "p", MetaData(), topics=[], aggregate_types=["Tag"],
        ignored=frozenset({kev.TagNameClaimed})),
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
        for topic in (context.topic, *(w.name for w in context.work)):
            assert {topic, topic + ".dlq"} <= names
    assert {"commands", "commands.dlq"} <= names


# --- assemble refuses manifests that contradict each other -----------------------------


def _processor(topic: str, *, store: object) -> Processor:
    raise AssertionError("assemble never builds a processor")


async def _job(*, bus: object) -> None: ...


async def _never(message: object) -> None:
    raise AssertionError("nothing is consumed here")


def _context(name: str, work: list[WorkTopic] | None = None,
             jobs: list[Job] | None = None) -> ContextManifest:
    return ContextManifest(name=name, aggregates=[], events=[], upcasters={}, handlers=[],
                           projectors={}, work=work or [], jobs=jobs or [])


def _work(name: str = "newsletter.outbox", role: str = "outbox",
          routes: list[Route] | None = None, processor: object = _processor) -> WorkTopic:
    return WorkTopic(name, role=role, processor=processor,  # type: ignore[arg-type]
                     routes=[Route([pev.AppDeleted])] if routes is None else routes)


def test_a_context_declares_its_work_topics_roles_and_the_routes_to_them() -> None:
    assembly = assemble([*CONTEXTS, _context("newsletter", [_work()])])
    assert assembly.work["newsletter.outbox"].name == "newsletter.outbox"
    event = Envelope.new(pev.AppDeleted(deleted_by=uuid4()), aggregate_type="App",
                         aggregate_id=uuid4(), aggregate_version=2, tenant_id=None,
                         correlation_id=uuid4(), causation_id=uuid4())
    assert "newsletter.outbox" in assembly.routing.topics_for(event)
    assert {"newsletter.outbox", "newsletter.outbox.dlq"} <= {t.name for t in assembly.topics(1, 1)}
    assert "newsletter.outbox" in all_roles(assembly.work)


async def test_processors_and_jobs_get_only_the_dependencies_they_declare() -> None:
    given: dict[str, object] = {}

    def outbox(topic: str, *, store: object) -> Processor:
        given.update(topic=topic, store=store)
        return Processor(group=topic, topics=[topic], handle=_never)

    async def digest(*, bus: object) -> None:
        given.update(bus=bus)

    container = SimpleNamespace(store="the store", bus="the bus", storage="the storage")
    processor = work_processor(container,  # type: ignore[arg-type]
                               _work("newsletter.outbox", processor=outbox))
    await run_job(container, Job("digest", 60.0, digest))  # type: ignore[arg-type]
    assert (processor.group, list(processor.topics)) == ("newsletter.outbox", ["newsletter.outbox"])
    assert given == {"topic": "newsletter.outbox", "store": "the store", "bus": "the bus"}


def test_roles_are_named_after_their_context() -> None:
    assert set(ASSEMBLY.work) == {"knowledge.indexing-priority", "knowledge.indexing-bulk",
                                  "knowledge.cleanup", "conversation.chat",
                                  "conversation.annotations", "conversation.cleanup",
                                  "workflow.chatflow", "workflow.form-deadlines", "workflow.runs",
                                  "mail.outbox"}


def test_a_projection_with_no_read_model_is_refused() -> None:
    newsletter = ContextManifest(name="newsletter", aggregates=[], events=[], upcasters={},
                                 handlers=[], projectors={"newsletters": [projectors()]})
    with pytest.raises(ValueError, match=r"\['newsletters'\] have no read model"):
        assemble([*CONTEXTS, newsletter])


def test_a_role_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"worker role 'newsletter\.outbox' is declared twice"):
        assemble([*CONTEXTS, _context("newsletter", [_work("newsletter.a"),
                                                     _work("newsletter.b")])])


@pytest.mark.parametrize("taken", ["cleanup", "events.knowledge", "commands"])
def test_a_work_topic_named_like_another_topic_is_refused(taken: str) -> None:
    with pytest.raises(ValueError, match=f"work topic '{taken}' is already declared by"):
        assemble([*CONTEXTS, _context("newsletter", [_work(taken)])])


def test_a_route_of_an_event_no_context_declares_is_refused() -> None:
    class MailBounced(EventPayload):
        pass

    with pytest.raises(ValueError, match=r"routes \['MailBounced'\], which no context declares"):
        assemble([*CONTEXTS, _context("newsletter", [_work(routes=[Route([MailBounced])])])])


@pytest.mark.parametrize("routes", [[], [Route([])]])
def test_a_work_topic_nothing_is_routed_to_is_refused(routes: list[Route]) -> None:
    with pytest.raises(ValueError, match="needs routes"):
        assemble([*CONTEXTS, _context("newsletter", [_work(routes=routes)])])


def test_a_processor_asking_for_what_the_container_lacks_is_refused() -> None:
    def needy(topic: str, *, store: object, smtp: object) -> Processor:
        raise AssertionError

    with pytest.raises(ValueError, match=r"newsletter.outbox asks for \['smtp'\], which the worker "
                                         "container does not provide"):
        assemble([*CONTEXTS, _context("newsletter", [_work(processor=needy)])])


def test_a_processor_taking_the_whole_container_is_refused() -> None:
    def old_style(c: object) -> Processor:
        raise AssertionError

    def no_topic(*, store: object) -> Processor:
        raise AssertionError

    for factory in (old_style, no_topic):
        with pytest.raises(ValueError, match="takes `topic`"):
            assemble([*CONTEXTS, _context("newsletter", [_work(processor=factory)])])


def test_jobs_come_from_the_backbone_and_the_manifests_each_name_once() -> None:
    assembly = assemble([*CONTEXTS, _context("newsletter", jobs=[Job("send_digest", 60.0, _job)])])
    assert set(assembly.jobs) == {"advance_projection_watermarks", "trim_consumed_messages",
                                  "datasets-queue-monitor", "clean_messages",
                                  "clean_unused_datasets_task",
                                  "time_out_human_input_forms", "fail_overdue_workflow_runs",
                                  "poll_workflow_schedules",
                                  "send_digest"}
    with pytest.raises(ValueError,
                       match="newsletter: job 'trim_consumed_messages' is declared twice"):
        assemble([_context("newsletter", jobs=[Job("trim_consumed_messages", 60.0, _job)])])
    with pytest.raises(ValueError, match="b: job 'send_digest' is declared twice"):
        assemble([_context("a", jobs=[Job("send_digest", 60.0, _job)]),
                  _context("b", jobs=[Job("send_digest", 60.0, _job)])])


def test_a_job_asking_for_what_the_container_lacks_is_refused() -> None:
    async def needy(*, printer: object) -> None: ...

    with pytest.raises(ValueError, match=r"job 'digest' asks for \['printer'\]"):
        assemble([_context("newsletter", jobs=[Job("digest", 60.0, needy)])])


def test_a_job_taking_the_whole_container_is_refused() -> None:
    async def old_style(c: object) -> None: ...

    with pytest.raises(ValueError, match="job 'digest' takes only its dependencies"):
        assemble([_context("newsletter", jobs=[Job("digest", 60.0, old_style)])])
