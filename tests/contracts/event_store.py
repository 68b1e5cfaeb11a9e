"""The event store contract: what every implementation must do, as a mixin a store's test
class combines with its `store` fixture.

`PostgresEventStore` (production; tests/integration/test_event_store.py, on a freshly
migrated database) is the reference; `InMemoryEventStore` (the unit tier;
tests/unit/test_memory_event_store.py) must behave the same in everything callers rely on:
positions, version order, optimistic concurrency, atomic batches, command outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from uuid import UUID, uuid4

import pytest

from events.envelope import Envelope
from events.store import (
    CommandAlreadyRecorded,
    CommandOutcome,
    ConcurrencyConflict,
    EventStore,
)
from schemas.base import EventPayload
from schemas.platform.events import AppCreated, AppDeleted, AppUpdated

TENANT = uuid4()


def app_event(aggregate_id: UUID, version: int, name: str | None = None,
              tenant_id: UUID | None = TENANT) -> Envelope[EventPayload]:
    """Version 1 creates the app, later versions rename it (to `name` or `v<version>`)."""
    actor = uuid4()
    payload: EventPayload = (
        AppCreated(name=name or "app", mode="chat", created_by=actor) if version == 1
        else AppUpdated(name=name or f"v{version}", description="", icon_type="emoji",
                        icon="🤖", icon_background="#FFEAD5", updated_by=actor))
    cid = uuid4()
    return Envelope.new(payload, aggregate_type="App", aggregate_id=aggregate_id,
                        aggregate_version=version, tenant_id=tenant_id, correlation_id=cid,
                        causation_id=cid)


def history(aggregate_id: UUID, versions: Sequence[int]) -> list[Envelope[EventPayload]]:
    return [app_event(aggregate_id, v) for v in versions]


def outcome_for(command_id: UUID, *, status: str = "accepted", aggregate_id: UUID | None = None,
                result: dict[str, object] | None = None,
                error: dict[str, object] | None = None) -> CommandOutcome:
    return CommandOutcome(command_id=command_id, status=status, aggregate_id=aggregate_id,
                          aggregate_version=None, position=None, result=result or {},
                          error=error)


def same_event(stored: Envelope[EventPayload], sent: Envelope[EventPayload]) -> bool:
    """Everything but the position (set only by the log) survives storing."""
    return (
        stored.event_id, stored.type, stored.schema_version, stored.tenant_id,
        stored.aggregate_type, stored.aggregate_id, stored.aggregate_version,
        stored.occurred_at, stored.correlation_id, stored.causation_id, stored.payload,
    ) == (
        sent.event_id, sent.type, sent.schema_version, sent.tenant_id,
        sent.aggregate_type, sent.aggregate_id, sent.aggregate_version,
        sent.occurred_at, sent.correlation_id, sent.causation_id, sent.payload,
    )


def positions(events: Sequence[Envelope[EventPayload]]) -> list[int | None]:
    return [e.position for e in events]


class EventStoreContract:
    """Behaviour every event store must show; subclasses provide a `store` fixture that is
    empty at the start of each test."""

    # --- positions ----------------------------------------------------------------------

    def test_an_empty_store_has_nothing(self, store: EventStore) -> None:
        assert store.max_position() == 0
        assert store.read_from(0, 10) == []
        assert store.load(uuid4()) == []
        assert store.outcome(uuid4()) is None

    def test_append_returns_the_last_position_and_positions_are_gap_free(
        self, store: EventStore,
    ) -> None:
        """Gap-free while appends succeed; see the next test for failed appends."""
        a, b = uuid4(), uuid4()
        assert store.append(history(a, [1, 2, 3])) == 3
        assert store.append(history(b, [1])) == 4
        assert store.append([app_event(a, 4), app_event(b, 2)]) == 6
        assert store.max_position() == 6
        log = store.read_from(0, 100)
        assert positions(log) == [1, 2, 3, 4, 5, 6]
        assert [(e.aggregate_id, e.aggregate_version) for e in log] == [
            (a, 1), (a, 2), (a, 3), (b, 1), (a, 4), (b, 2)]

    def test_a_failed_append_may_leave_a_gap_that_readers_page_over(
        self, store: EventStore,
    ) -> None:
        """Postgres positions come from a sequence, which a failed append does not roll
        back: positions only increase, and readers page by position, never by count."""
        a = uuid4()
        store.append(history(a, [1]))
        with pytest.raises(ConcurrencyConflict):
            store.append([app_event(uuid4(), 1), app_event(uuid4(), 1), app_event(a, 1)])
        cid = uuid4()
        store.append(history(uuid4(), [1]), outcome_for(cid))
        with pytest.raises(CommandAlreadyRecorded):
            store.append(history(uuid4(), [1, 2]), outcome_for(cid))
        last = store.append(history(a, [2]))

        log = store.read_from(0, 100)
        assert [(e.aggregate_id, e.aggregate_version) for e in log][-1] == (a, 2)
        assert len(log) == 3
        got = [e.position or 0 for e in log]
        assert all(e.position for e in log) and got == sorted(set(got))
        assert got[-1] == last == store.max_position()
        paged: list[Envelope[EventPayload]] = []
        after = 0
        while page := store.read_from(after, 1):
            paged += page
            after = page[-1].position or 0
        assert [e.event_id for e in paged] == [e.event_id for e in log]
        for before, event in pairwise(log):
            assert before.position is not None
            assert store.read_from(before.position, 1)[0].event_id == event.event_id

    def test_the_log_keeps_append_order_and_whole_envelopes(self, store: EventStore) -> None:
        sent = [*history(uuid4(), [1, 2]), app_event(uuid4(), 1, tenant_id=None)]
        store.append(sent[:2])
        store.append(sent[2:])
        log = store.read_from(0, 100)
        assert len(log) == len(sent)
        assert all(same_event(stored, s) for stored, s in zip(log, sent, strict=True))
        assert log[2].tenant_id is None

    # --- loading one aggregate ----------------------------------------------------------

    def test_load_gives_one_aggregates_events_in_version_order_with_typed_payloads(
        self, store: EventStore,
    ) -> None:
        a, b = uuid4(), uuid4()
        sent_a = history(a, [1, 2, 3])
        store.append([sent_a[0], app_event(b, 1)])
        store.append([sent_a[1]])
        store.append([app_event(b, 2), sent_a[2]])

        loaded = store.load(a)
        assert [e.aggregate_version for e in loaded] == [1, 2, 3]
        assert all(same_event(stored, s) for stored, s in zip(loaded, sent_a, strict=True))
        assert positions(loaded) == [None, None, None]  # load does not say where they sit
        assert isinstance(loaded[0].payload, AppCreated)
        assert loaded[0].payload.name == "app"
        assert isinstance(loaded[2].payload, AppUpdated)
        assert loaded[2].payload.name == "v3"
        assert [e.aggregate_version for e in store.load(b)] == [1, 2]

    # --- optimistic concurrency and atomic batches --------------------------------------

    def test_appending_a_taken_version_conflicts(self, store: EventStore) -> None:
        a = uuid4()
        first = history(a, [1, 2])
        store.append(first)
        with pytest.raises(ConcurrencyConflict):
            store.append([app_event(a, 2, name="the other writer")])
        assert all(same_event(s, f) for s, f in zip(store.load(a), first, strict=True))
        assert store.max_position() == 2

    def test_a_version_taken_twice_in_one_batch_conflicts(self, store: EventStore) -> None:
        a = uuid4()
        with pytest.raises(ConcurrencyConflict):
            store.append([app_event(a, 1), app_event(a, 1, name="twin")])
        assert store.load(a) == []
        assert store.max_position() == 0

    def test_a_conflicting_batch_stores_nothing_across_aggregates(
        self, store: EventStore,
    ) -> None:
        a, b, c = uuid4(), uuid4(), uuid4()
        store.append(history(a, [1]))
        cid = uuid4()
        batch = [app_event(b, 1), app_event(c, 1), app_event(c, 2), app_event(a, 1)]
        with pytest.raises(ConcurrencyConflict):
            store.append(batch, outcome_for(cid, aggregate_id=b))
        assert store.load(b) == [] and store.load(c) == []
        assert [e.aggregate_id for e in store.read_from(0, 100)] == [a]
        assert store.max_position() == 1
        assert store.outcome(cid) is None  # the command may decide again

        # Deciding again works, and the log goes on in order after the failed batch.
        last = store.append([app_event(b, 1), app_event(a, 2)], outcome_for(cid))
        log = store.read_from(0, 100)
        assert [(e.aggregate_id, e.aggregate_version) for e in log] == [(a, 1), (b, 1), (a, 2)]
        assert log[-1].position == last == store.max_position()
        assert [e.position or 0 for e in log] == sorted({e.position or 0 for e in log})

    def test_only_taken_versions_conflict(self, store: EventStore) -> None:
        """The guard is the (aggregate, version) key, as the Postgres primary key: the store
        does not require consecutive versions (aggregates always record the next one), and
        load orders an aggregate's events by version whatever order they came in."""
        a, b = uuid4(), uuid4()
        store.append([app_event(a, 2), app_event(a, 1)])
        store.append(history(b, [1, 3]))
        assert [e.aggregate_version for e in store.load(a)] == [1, 2]
        assert [e.aggregate_version for e in store.load(b)] == [1, 3]
        assert [e.aggregate_version for e in store.read_from(0, 10)] == [2, 1, 1, 3]
        with pytest.raises(ConcurrencyConflict):
            store.append(history(b, [3]))
        store.append(history(b, [2]))
        assert [e.aggregate_version for e in store.load(b)] == [1, 2, 3]

    # --- command outcomes ---------------------------------------------------------------

    def test_the_outcome_is_stored_with_the_events_at_their_last_position(
        self, store: EventStore,
    ) -> None:
        a, cid = uuid4(), uuid4()
        store.append(history(uuid4(), [1]))
        last = store.append(history(a, [1, 2]),
                            outcome_for(cid, aggregate_id=a, result={"app_id": str(a)}))
        stored = store.outcome(cid)
        assert stored == CommandOutcome(command_id=cid, status="accepted", aggregate_id=a,
                                        aggregate_version=None, position=last,
                                        result={"app_id": str(a)}, error=None)
        assert last == 3

    def test_an_outcome_keeps_its_aggregate_version(self, store: EventStore) -> None:
        a, cid = uuid4(), uuid4()
        outcome = CommandOutcome(command_id=cid, status="accepted", aggregate_id=a,
                                 aggregate_version=2, position=None, result={}, error=None)
        store.append(history(a, [1, 2]), outcome)
        stored = store.outcome(cid)
        assert stored is not None and stored.aggregate_version == 2

    def test_an_outcome_keeps_the_aggregates_it_wrote(self, store: EventStore) -> None:
        """What read-your-writes waits for: each aggregate the command wrote, at its version."""
        a, b, cid = uuid4(), uuid4(), uuid4()
        wrote = {a: ("App", 2), b: ("App", 1)}
        store.append([*history(a, [1, 2]), app_event(b, 1)],
                     replace(outcome_for(cid, aggregate_id=a), aggregates=wrote))
        wrote[uuid4()] = ("App", 9)  # the caller's dict is not what was stored
        stored = store.outcome(cid)
        assert stored is not None and stored.aggregates == {a: ("App", 2), b: ("App", 1)}

    def test_outcome_results_come_back_as_json(self, store: EventStore) -> None:
        """What a command answers travels as JSON (over the outcome table, to the gateway):
        the store gives back the JSON form, not the Python objects it was given."""
        a, cid = uuid4(), uuid4()
        store.append(history(a, [1]),
                     outcome_for(cid, result={"ids": (a,), "nested": {"n": 1.5, "ok": True}}))
        stored = store.outcome(cid)
        assert stored is not None
        assert stored.result == {"ids": [str(a)], "nested": {"n": 1.5, "ok": True}}

    def test_a_second_append_with_the_same_outcome_is_refused_and_stores_nothing(
        self, store: EventStore,
    ) -> None:
        a, b, cid = uuid4(), uuid4(), uuid4()
        first = store.append(history(a, [1]), outcome_for(cid, aggregate_id=a))
        with pytest.raises(CommandAlreadyRecorded):
            store.append(history(b, [1]), outcome_for(cid, aggregate_id=b))
        assert store.load(b) == []
        assert store.max_position() == first
        stored = store.outcome(cid)
        assert stored is not None and stored.aggregate_id == a and stored.position == first

    def test_a_redelivered_command_is_recognised_even_when_its_versions_are_taken(
        self, store: EventStore,
    ) -> None:
        """The same decision appended twice: it is a duplicate, not a conflict to retry."""
        a, cid = uuid4(), uuid4()
        store.append(history(a, [1]), outcome_for(cid))
        with pytest.raises(CommandAlreadyRecorded):
            store.append(history(a, [1]), outcome_for(cid))
        assert store.max_position() == 1

    def test_record_without_events_keeps_the_first_outcome(self, store: EventStore) -> None:
        cid = uuid4()
        error = {"code": "app_not_found", "message": "App not found.", "status": 404}
        store.record_without_events(outcome_for(cid, status="rejected", error=error))
        store.record_without_events(outcome_for(cid, status="accepted", result={"x": 1}))
        stored = store.outcome(cid)
        assert stored is not None
        assert (stored.status, stored.error, stored.result) == ("rejected", error, {})
        assert stored.position is None
        assert store.max_position() == 0

    def test_record_without_events_keeps_an_outcome_stored_with_events(
        self, store: EventStore,
    ) -> None:
        cid = uuid4()
        last = store.append(history(uuid4(), [1]), outcome_for(cid, result={"x": 1}))
        store.record_without_events(outcome_for(cid, status="rejected",
                                                error={"code": "conflict"}))
        stored = store.outcome(cid)
        assert stored is not None
        assert (stored.status, stored.result, stored.position) == ("accepted", {"x": 1}, last)

    def test_an_outcome_recorded_without_events_has_no_position(
        self, store: EventStore,
    ) -> None:
        store.append(history(uuid4(), [1]))
        cid = uuid4()
        store.record_without_events(CommandOutcome(
            command_id=cid, status="accepted", aggregate_id=None, aggregate_version=None,
            position=7, result={}, error=None))
        stored = store.outcome(cid)
        assert stored is not None and stored.position is None

    def test_appending_after_an_outcome_without_events_is_refused(
        self, store: EventStore,
    ) -> None:
        a, cid = uuid4(), uuid4()
        store.record_without_events(outcome_for(cid, status="rejected", error={"code": "x"}))
        with pytest.raises(CommandAlreadyRecorded):
            store.append(history(a, [1]), outcome_for(cid))
        assert store.load(a) == []
        assert store.max_position() == 0

    # --- group commit -------------------------------------------------------------------

    def test_a_group_stores_every_commands_events_and_outcome_with_its_own_position(
        self, store: EventStore,
    ) -> None:
        a, b = uuid4(), uuid4()
        first, rejected, second = uuid4(), uuid4(), uuid4()
        got = store.append_batch([
            (history(a, [1, 2]), outcome_for(first, aggregate_id=a)),
            ([], outcome_for(rejected, status="rejected", error={"code": "x"})),
            (history(b, [1]), outcome_for(second, aggregate_id=b)),
        ])
        assert got == [2, None, 3]
        assert [store.outcome(c).position for c in (first, rejected, second)] == got  # type: ignore[union-attr]
        assert store.outcome(rejected).status == "rejected"  # type: ignore[union-attr]
        assert positions(store.read_from(0, 10)) == [1, 2, 3]

    def test_a_group_with_any_conflict_stores_nothing(self, store: EventStore) -> None:
        a, taken = uuid4(), uuid4()
        store.append(history(a, [1]), outcome_for(taken))
        before = store.max_position()
        fresh = uuid4()
        with pytest.raises(ConcurrencyConflict):
            store.append_batch([(history(uuid4(), [1]), outcome_for(fresh)),
                                (history(a, [1]), outcome_for(uuid4()))])
        with pytest.raises(CommandAlreadyRecorded):
            store.append_batch([(history(uuid4(), [1]), outcome_for(uuid4())),
                                (history(uuid4(), [1]), outcome_for(taken))])
        assert store.outcome(fresh) is None
        assert [e.position for e in store.read_from(0, 100)] == [before]

    def test_a_group_of_rejections_stores_their_outcomes(self, store: EventStore) -> None:
        ids = [uuid4(), uuid4()]
        assert store.append_batch([([], outcome_for(i, status="rejected")) for i in ids]) == [
            None, None]
        assert all(store.outcome(i) is not None for i in ids)
        assert store.max_position() == 0

    # --- reading the log ----------------------------------------------------------------

    def test_read_from_pages_through_the_log(self, store: EventStore) -> None:
        ids = [uuid4() for _ in range(7)]
        for i in ids:
            store.append(history(i, [1]))
        pages: list[list[Envelope[EventPayload]]] = []
        after = 0
        while page := store.read_from(after, 3):
            pages.append(page)
            last = page[-1].position
            assert last is not None
            after = last
        assert [positions(p) for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
        assert [e.aggregate_id for p in pages for e in p] == ids
        assert all(isinstance(e.payload, AppCreated) for p in pages for e in p)
        assert positions(store.read_from(5, 100)) == [6, 7]
        assert store.read_from(7, 100) == []
        assert store.read_from(100, 100) == []

    def test_read_from_gives_typed_payloads_of_every_kind(self, store: EventStore) -> None:
        a = uuid4()
        cid = uuid4()
        deleted = Envelope.new(AppDeleted(deleted_by=uuid4()), aggregate_type="App",
                               aggregate_id=a, aggregate_version=3, tenant_id=TENANT,
                               correlation_id=cid, causation_id=cid)
        store.append([*history(a, [1, 2]), deleted])
        assert [type(e.payload) for e in store.read_from(0, 10)] == [
            AppCreated, AppUpdated, AppDeleted]
        assert [e.type for e in store.read_from(0, 10)] == [
            "AppCreated", "AppUpdated", "AppDeleted"]

    def test_max_position_follows_appends_only(self, store: EventStore) -> None:
        assert store.max_position() == 0
        store.append(history(uuid4(), [1, 2]))
        assert store.max_position() == 2
        store.record_without_events(outcome_for(uuid4()))
        assert store.max_position() == 2
        with pytest.raises(ConcurrencyConflict):
            store.append([app_event(uuid4(), 1), *history(uuid4(), [1, 1])])
        assert store.max_position() == 2
        assert store.append(history(uuid4(), [1])) > 2

    # --- what belongs to something ---------------------------------------------------------

    def test_events_naming_finds_the_events_of_a_type_whose_field_names_a_value(
        self, store: EventStore,
    ) -> None:
        ours, theirs = app_event(uuid4(), 1), app_event(uuid4(), 1)
        renamed = app_event(ours.aggregate_id, 2)
        store.append([ours, theirs, renamed])
        creator = ours.payload.created_by  # type: ignore[attr-defined]
        [found] = store.events_naming(["AppCreated"], "created_by", creator)
        assert (found.event_id, found.aggregate_id, found.position) == (
            ours.event_id, ours.aggregate_id, 1)
        assert store.events_naming(["AppUpdated"], "created_by", creator) == []
        assert store.events_naming(["AppCreated"], "created_by", uuid4()) == []
