"""What the operations commands do (`eddy events`, `eddy dlq`, `eddy projections`,
`eddy groups`, `eddy topics`): wiring from the composition root to the layers' modules, and
their terminal output. Each action is a function of (settings, parsed arguments) returning
the exit code; `cli.py` only registers the arguments and names the function."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from config import Settings

if TYPE_CHECKING:
    from uuid import UUID

    import psycopg
    from sqlalchemy.ext.asyncio import AsyncEngine

    from adapters.secrets import Keyring
    from bootstrap import Container
    from commands.platform.aggregates import ApiKey, Workspace
    from commands.workflow.aggregates import WorkflowDraft, WorkflowVersion
    from events.listing import EventFilter
    from events.replay import ReplayPlan
    from schemas.base import CommandPayload
    from workers.dead_letters import DeadLetterQueues

T = TypeVar("T")

# The heavy imports (the composition root, rich) are made by the commands that need them,
# so `eddy --help` and the other roles start without them.


class OperationError(Exception):
    """Bad input or a missing thing: printed as `eddy: <message>`, exit code 2 (1 if not found)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class CommandRefused(OperationError):
    """A command an operator command ran was refused: its handler's message, exit code 1."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "refused")), code=1)
        self.error_code = str(error.get("code", ""))


def emit(record: dict[str, object], as_json: bool, human: str) -> None:
    print(orjson.dumps(record, default=str).decode() if as_json else human, flush=True)


def _print_document(document: dict[str, Any], as_json: bool) -> None:
    """One record whole: a JSON line, or indented JSON for people."""
    print(orjson.dumps(document, option=0 if as_json else orjson.OPT_INDENT_2,
                       default=str).decode(), flush=True)


# --- eddy events list|tail|show|replay --------------------------------------------------------


_EVENT_HEADER = f"{'POSITION':>9}  {'OCCURRED_AT':<19}  {'TENANT':<36}  {'AGGREGATE':<60}  TYPE"


def _event_line(summary: dict[str, object]) -> str:
    aggregate = (f"{summary['aggregate_type']}:{summary['aggregate_id']}"
                 f"@{summary['aggregate_version']}")
    return (f"{summary['position']:>9}  {str(summary['occurred_at'])[:19]:<19}  "
            f"{summary['tenant_id'] or '-':<36}  {aggregate:<60}  {summary['type']}")


@contextlib.contextmanager
def _event_queries() -> Iterator[None]:
    """A query the event store refuses (a bad id, time or limit) is bad input."""
    from events.listing import EventQueryError

    try:
        yield
    except EventQueryError as exc:
        raise OperationError(str(exc)) from exc


def _event_filter(args: argparse.Namespace) -> EventFilter:
    from events.listing import EventFilter, parse_time, parse_uuid

    for name in ("from_position", "to_position"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise OperationError(f"--{name.replace('_', '-')} must be 1 or more")
    with _event_queries():
        return EventFilter(
            tenant=parse_uuid(args.tenant, "--tenant") if args.tenant else None,
            aggregate=parse_uuid(args.aggregate, "--aggregate") if args.aggregate else None,
            type=args.type, from_position=args.from_position, to_position=args.to_position,
            since=parse_time(args.since) if args.since else None,
            until=parse_time(args.until) if args.until else None,
            dataset=parse_uuid(args.dataset, "--dataset") if args.dataset else None,
            app=parse_uuid(args.app, "--app") if args.app else None)


@contextlib.contextmanager
def _event_store(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    import psycopg

    with _event_queries(), psycopg.connect(settings.database_dsn(), autocommit=True) as conn:
        yield conn


def list_events(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy events list`: the latest --limit matching events (from --from-position on)."""
    from events.listing import list_events as matching

    with _event_store(settings) as conn:
        event_filter = _event_filter(args)
        if not args.json:
            print(_EVENT_HEADER, flush=True)
        for row in matching(conn, event_filter, args.limit):
            emit(row.summary(), args.json, _event_line(row.summary()))
    return 0


def tail_events(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy events tail`: new matching events as they are stored, until Ctrl-C or --count."""
    from events.listing import follow

    with contextlib.suppress(KeyboardInterrupt), _event_store(settings) as conn:
        event_filter = _event_filter(args)
        if not args.json:
            print(_EVENT_HEADER, flush=True)
        for count, row in enumerate(follow(conn, event_filter), start=1):
            emit(row.summary(), args.json, _event_line(row.summary()))
            if args.count and count >= args.count:
                break
    return 0


def show_event(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy events show`: one event by position or id, its whole envelope."""
    from bootstrap import ASSEMBLY
    from events.listing import find_event

    with _event_store(settings) as conn:
        row = find_event(conn, args.ref)
    if row is None:
        raise OperationError(f"no event {args.ref}", code=1)
    _print_document(row.envelope(ASSEMBLY.event_types), args.json)
    return 0


def _print_plan(title: str, plan: ReplayPlan) -> None:
    print(f"{title}: {plan.events} event(s), {plan.messages} message(s)")
    print("  per event type:")
    for name, count in sorted(plan.by_type.items()):
        print(f"    {count:>8}  {name}")
    print("  per receiving group (acts on them):")
    for name, count in sorted(plan.by_group.items()):
        print(f"    {count:>8}  {name}")
    for name, count in sorted(plan.skipped_by_group.items()):
        print(f"    {count:>8}  {name} (skips them: side effects not allowed)")


def replay_events(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy events replay`: matching events again, to one group or all of their topics."""
    return asyncio.run(_replay(settings, _event_filter(args), args.group, args.dry_run,
                               args.allow_side_effects, args.json))


async def _replay(settings: Settings, selection: EventFilter, group: str | None,
                  dry_run: bool, allow_side_effects: bool, as_json: bool) -> int:
    import psycopg
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bootstrap import ASSEMBLY, build
    from events import replay as replaying
    from workers.groups import declared_groups

    container = await build(settings)
    try:
        try:
            request = replaying.Replay(selection, declared_groups(container), group=group,
                                       allow_side_effects=allow_side_effects)
        except replaying.ReplayError as exc:
            raise OperationError(str(exc)) from exc
        with psycopg.connect(settings.database_dsn(), autocommit=True) as conn:
            source = replaying.ReplaySource(conn, selection, ASSEMBLY.event_types)
            if dry_run:
                plan = replaying.plan(request, source, ASSEMBLY.routing)
                _report(plan, "dry run (nothing sent)", as_json, dry_run=True)
                return 0
            progress = Progress(
                TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(file=sys.stderr), transient=as_json)
            with progress:
                task = progress.add_task("replay", total=source.total, rate="")

                def advance(events: int) -> None:
                    progress.advance(task, events)
                    speed = progress.tasks[0].speed or 0.0
                    progress.update(task, rate=f"{speed:,.0f} events/s")

                plan = await replaying.run(request, source, ASSEMBLY.routing, container.bus,
                                           advance)
            _report(plan, f"replayed ({request.replay_id})", as_json, dry_run=False,
                    replay_id=request.replay_id)
            return 0
    finally:
        await container.close()


def _report(plan: ReplayPlan, title: str, as_json: bool, dry_run: bool,
            **extra: Any) -> None:
    if as_json:
        emit({**plan.as_json(), "dry_run": dry_run, **extra}, True, "")
    else:
        _print_plan(title, plan)


# --- eddy projections ------------------------------------------------------------------------


def _version_number(projection: str, ref: str) -> int:
    number = ref.removeprefix(f"{projection}_v")
    if not number.isdigit():
        raise OperationError(f"{ref!r} is no version of {projection} (say 2 or {projection}_v2)")
    return int(number)


def _version_record(v: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(v)  # type: ignore[call-overload,no-any-return]


_VERSION_HEADER = (f"{'PROJECTION':<12} {'VERSION':<14} {'LAYOUT':>6}  {'STATE':<12} "
                   f"{'ACTIVE':<6} {'LAG':>8} {'PARKED':>7}  {'BUILT_AT':<19}  ACTIVATED_AT")


def _on_versions(settings: Settings,
                 work: Callable[[AsyncEngine], Awaitable[None]]) -> int:
    """Run one `eddy projections` action on the read-model database; a version that is not
    there, or a change the versions refuse, is the operator's mistake."""
    from bootstrap import build_engine
    from projections import versions as pv

    async def run() -> None:
        engine = build_engine(settings)
        try:
            await work(engine)
        except pv.VersionNotFound as exc:
            raise OperationError(str(exc), code=1) from exc
        except pv.VersionRefused as exc:
            raise OperationError(str(exc)) from exc
        finally:
            await engine.dispose()

    asyncio.run(run())
    return 0


def list_versions(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy projections list|status`: every version; status also names the stale ones."""
    from bootstrap import ASSEMBLY
    from projections import versions as pv
    from projections.layout import newest_layout

    async def work(engine: AsyncEngine) -> None:
        found = await pv.status(engine, ASSEMBLY.projections.values())
        if not args.json:
            print(_VERSION_HEADER)
        for s in found:
            v = s.version
            lag = "-" if s.lag_events is None else str(s.lag_events)
            emit({**_version_record(v), "lag_events": s.lag_events,
                  "parked": [p.as_json() for p in s.parked],
                  "waiting_events": s.waiting_events}, args.json,
                 f"{v.projection:<12} {v.schema:<14} {v.layout:>6}  {v.state:<12} "
                 f"{'yes' if v.active else '':<6} {lag:>8} {len(s.parked):>7}  "
                 f"{str(v.built_at or '-')[:19]:<19}  {str(v.activated_at or '-')[:19]}")
            if not args.json:
                for p in s.parked:
                    print(f"    parked: {p.aggregate_type} {p.aggregate_id} "
                          f"v{p.aggregate_version} {p.event_type} (position {p.position}"
                          f", {s.waiting_events} event(s) waiting): {p.error[:200]}")
        if not args.json and any(s.parked for s in found):
            print("parked events wait for you: `eddy dlq replay` once fixed, or `eddy dlq "
                  "drop … --reason` to skip them")
        if args.action == "status" and not args.json:
            for s in found:  # each projection's layout is its own tables'
                newest = newest_layout(ASSEMBLY.projections[s.version.projection].metadata)
                if s.version.active and s.version.layout < newest:
                    print(f"the code writes layout {newest} of {s.version.projection}: "
                          f"rebuild {s.version.projection} to use it")

    return _on_versions(settings, work)


def rebuild_version(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy projections rebuild`: the next version from the event store, caught up."""
    from bootstrap import ASSEMBLY
    from events.postgres_store import PostgresEventStore
    from projections import versions as pv
    from projections.rebuild import Progress, rebuild

    def show(p: Progress) -> None:
        eta = "-" if p.eta_seconds is None else f"{p.eta_seconds:,.0f} s"
        print(f"\r{p.phase:<9} {p.done:>10,}/{p.total:<10,} {p.rate:>10,.0f}/s "
              f"ETA {eta:<8}", end="", file=sys.stderr, flush=True)

    async def work(engine: AsyncEngine) -> None:
        store = PostgresEventStore(
            ASSEMBLY.event_types, host=settings.DB_HOST or "", port=settings.DB_PORT,
            user=settings.DB_USERNAME, password=settings.DB_PASSWORD,
            dbname=settings.DB_DATABASE)
        try:
            result = await rebuild(engine, settings.database_dsn(), store,
                                   ASSEMBLY.event_types, ASSEMBLY.projections[args.projection],
                                   show)
        finally:
            store.close()
        print(file=sys.stderr)
        v = result.version
        print(f"{v.schema} (layout {v.layout}) is live: {result.events_loaded:,} events "
              f"loaded in {result.load_seconds:.1f} s "
              f"({result.events_loaded / max(result.load_seconds, 1e-9):,.0f}/s), "
              f"{result.events_caught_up:,} caught up; "
              f"{sum(result.rows.values()):,} rows", flush=True)
        if args.switch:
            await pv.switch(engine, v.projection, v.version)
            print(f"reads now use {v.schema}")
        else:
            print(f"switch reads to it: eddy projections switch {v.projection} {v.version}")

    return _on_versions(settings, work)


def change_version(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy projections switch|rollback|drop`: which version reads use (this one, or the
    one active before), or one version less."""
    from projections import versions as pv

    async def work(engine: AsyncEngine) -> None:
        if args.action == "rollback":
            v = await pv.rollback(engine, args.projection)
        else:
            change = pv.switch if args.action == "switch" else pv.drop
            v = await change(engine, args.projection,
                             _version_number(args.projection, args.version))
        print(f"dropped {v.schema}" if args.action == "drop" else f"reads now use {v.schema}")

    return _on_versions(settings, work)


def ensure_topics(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy topics ensure`: create missing topics and grow those with fewer partitions
    than configured."""
    return asyncio.run(_ensure_topics(settings, args.json))


async def _ensure_topics(settings: Settings, as_json: bool) -> int:
    from bootstrap import build_bus, topic_specs

    bus = build_bus(settings)
    await bus.start()
    try:
        specs = topic_specs(settings)
        before = await bus.topic_partitions([s.name for s in specs])
        await bus.ensure_topics(specs)
        grown = False
        for spec in specs:
            had = before.get(spec.name)
            if had is None:
                action = "created"
            elif had < spec.partitions:
                try:
                    await bus.add_partitions(spec.name, spec.partitions)
                except Exception as exc:
                    raise OperationError(f"growing {spec.name} from {had} to "
                                         f"{spec.partitions} partitions failed: {exc}") from exc
                action, grown = f"grown from {had}", True
            elif had > spec.partitions:
                action = f"kept at {had} (more than configured; partitions never shrink)"
            else:
                action = "ok"
            emit({"topic": spec.name, "partitions": max(had or 0, spec.partitions),
                  "action": action}, as_json,
                 f"{spec.name:<40} {max(had or 0, spec.partitions):>4}  {action}")
        if grown and not as_json:
            print("restart the api and the workers: keys now map to the new partition count")
        return 0
    finally:
        await bus.stop()


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def groups_table(groups: list[Any]) -> str:
    """`eddy groups` for people: one line per group, then its members and partitions."""
    lines = [f"{'GROUP':<32} {'LAG':>8} {'EVENTS/S':>9} {'OLDEST UNACKED':>15}  MEMBERS"]
    for g in sorted(groups, key=lambda g: g.name):
        rate = "-" if g.throughput is None else f"{g.throughput:,.1f}"
        lines.append(f"{g.name:<32} {g.lag:>8} {rate:>9} {_age(g.oldest_unacked_age):>15}  "
                     f"{len(g.members)}")
        for member, parts in sorted(g.members.items()):
            owned = ", ".join(f"{t}:{p}" for t, p in sorted(parts)) or "(none)"
            lines.append(f"    {member:<28} {owned}")
    return "\n".join(lines)


def show_groups(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy groups`: consumer groups, their members, partitions, lag and rate."""
    return asyncio.run(_show_groups(settings, args.json, args.watch, args.interval))


async def _show_groups(settings: Settings, as_json: bool, watch: bool, interval: float) -> int:
    from bootstrap import build_bus, build_engine
    from events.consumer_groups import GroupsSampler

    if interval <= 0:
        raise OperationError("--interval must be positive")
    bus, engine = build_bus(settings), build_engine(settings)
    await bus.start()
    try:
        sampler = GroupsSampler(engine, bus)
        await sampler.sample()  # throughput needs two samples
        while True:
            await asyncio.sleep(interval)
            groups = await sampler.sample()
            if as_json:
                for g in sorted(groups, key=lambda g: g.name):
                    emit(g.as_json(), True, "")
            else:
                if watch:
                    print("\x1b[2J\x1b[H", end="")  # clear the screen, as watch(1) does
                print(groups_table(groups), flush=True)
            if not watch:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        await bus.stop()
        await engine.dispose()


# --- eddy dlq list|show|replay|drop ----------------------------------------------------------


def _dlq_line(summary: dict[str, object]) -> str:
    error = str(summary["error"]).replace("\n", " ")
    return (f"{summary['topic']}  {summary['id']}  key={summary['key']}  "
            f"group={summary['group']}  attempts={summary['attempts']}  "
            f"replays={summary['replays']}  first={summary['first_failed_at']}  "
            f"last={summary['last_failed_at']}\n    {error[:200]}")


def _on_dead_letters(settings: Settings,
                     work: Callable[[DeadLetterQueues], Awaitable[None]]) -> int:
    """Run one `eddy dlq` action on the dead-letter queues of the Redis Streams bus."""
    from adapters.bus.redis_streams import RedisStreamsBus
    from bootstrap import ASSEMBLY, build_bus, build_engine, topic_specs
    from events.postgres_store import PostgresEventStore
    from projections.versions import ReadModels
    from workers.dead_letters import DeadLetterError, DeadLetterQueues, ParkedSkips

    async def run() -> None:
        bus = build_bus(settings)
        if not isinstance(bus, RedisStreamsBus):
            raise OperationError("`eddy dlq` needs the Redis Streams bus (EVENT_BUS=redis); on "
                                 "Kafka read `<topic>.dlq` with your Kafka tools (a consumer "
                                 "group of your own, so the DLQ is not consumed for others)")
        await bus.start()
        # a projection's dead letter is a parked event: settling it moves that projection on
        read_models = ReadModels(build_engine(settings))
        store = PostgresEventStore(
            ASSEMBLY.event_types, host=settings.DB_HOST or "", port=settings.DB_PORT,
            user=settings.DB_USERNAME, password=settings.DB_PASSWORD,
            dbname=settings.DB_DATABASE)
        try:
            await bus.ensure_topics(topic_specs(settings))
            queues = DeadLetterQueues(bus, ParkedSkips(read_models, store, ASSEMBLY.event_types,
                                                       ASSEMBLY.projections))
            try:
                await work(queues)
            except DeadLetterError as exc:
                raise OperationError(str(exc), code=1) from exc
        finally:
            store.close()
            await read_models.database.dispose()
            await bus.stop()

    asyncio.run(run())
    return 0


def list_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy dlq list`: dead letters per topic (of one --group)."""

    async def work(queues: DeadLetterQueues) -> None:
        topics = [args.topic] if args.topic else await queues.topics()
        total = 0
        for topic in topics:
            for letter in await queues.list(topic, args.group):
                total += 1
                emit(letter.summary(), args.json, _dlq_line(letter.summary()))
        if not args.json:
            print(f"{total} dead letter(s)", flush=True)

    return _on_dead_letters(settings, work)


def show_dead_letter(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy dlq show`: one dead letter, with its traceback."""

    async def work(queues: DeadLetterQueues) -> None:
        _print_document((await queues.get(args.topic, args.id)).detail(), args.json)

    return _on_dead_letters(settings, work)


def settle_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy dlq replay|drop`: one dead letter (or --all of a topic) published to its source
    topic again, or given up for --reason; either way it leaves the queue."""

    async def work(queues: DeadLetterQueues) -> None:
        if args.action == "drop" and not (args.reason or "").strip():
            raise OperationError("dlq drop needs --reason \"why this message is given up\"")
        if bool(args.id) == bool(args.all):
            raise OperationError(f"dlq {args.action}: give one dead-letter id or --all")
        letters = (await queues.list(args.topic) if args.all
                   else [await queues.get(args.topic, args.id)])
        for done, letter in enumerate(letters, start=1):
            if args.action == "replay":
                await queues.replay(letter)
                verb = f"replayed to {letter.source_topic}"
            else:
                skipped = await queues.drop(letter, args.reason)
                verb = "dropped" + (f"; skipped where parked: {', '.join(skipped)}"
                                    if skipped else "")
            print(f"[{done}/{len(letters)}] {letter.topic} {letter.id} {verb}", flush=True)

    return _on_dead_letters(settings, work)


# --- Dify's operator commands (its api/commands.py): accounts and workspaces ------------------
# Same names, options, prompts and messages as Dify's; a refusal is printed to stderr with
# exit code 1 (Dify prints it in red and exits 0). Each change of domain state is a command
# executed against the event store here, as the commands consumer group would: the running
# node's relay and projectors carry it to the read models.


def _ask(value: str | None, label: str, *, secret: bool = False) -> str:
    """An option's value, prompted for when it was not given (as Dify's `prompt=True`)."""
    import getpass

    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise OperationError(f"--{label.lower().replace(' ', '-')} is required")
    return getpass.getpass(f"{label}: ") if secret else input(f"{label}: ")


def _ask_optional(value: str | None, label: str) -> str | None:
    """An optional option's value: prompted for on a terminal (an empty answer: none)."""
    if value is not None or not sys.stdin.isatty():
        return value
    return input(f"{label}: ") or None


def _confirmed(question: str) -> bool:
    """Dify's `click.confirm(..., abort=True)`: anything but yes aborts."""
    print(f"{question} [y/N]: ", end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("Aborted!", file=sys.stderr)
    return False


@contextlib.asynccontextmanager
async def _node(settings: Settings) -> AsyncIterator[Container]:
    """The composition root's parts for one operator command."""
    from bootstrap import build

    container = await build(settings)
    try:
        yield container
    finally:
        await container.close()


async def _command(container: Container, payload: CommandPayload, *, aggregate_id: UUID,
                   tenant_id: UUID | None = None, actor_id: UUID | None = None
                   ) -> dict[str, Any]:
    """Decide and record a command now (what the commands consumer group does with one from
    the gateway); a refusal is the operator's error, with the handler's message."""
    from uuid import uuid4

    from commands.executor import execute
    from schemas.base import CommandEnvelope

    command = CommandEnvelope.of(payload, aggregate_id=aggregate_id, tenant_id=tenant_id,
                                 actor_id=actor_id, correlation_id=uuid4())
    outcome = await asyncio.to_thread(execute, container.store, container.handlers, command)
    if outcome.status != "accepted":
        raise CommandRefused(outcome.error or {})
    return dict(outcome.result)


def create_tenant(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy create-tenant`: a workspace for an account, the account registered first (with
    a random password, printed) when no account has that e-mail."""
    email = _ask(args.email, "Email").strip()
    if not email:
        raise OperationError("Email is required.", code=1)
    if "@" not in email:
        raise OperationError("Invalid email address.", code=1)
    return asyncio.run(_create_tenant(settings, email, _ask_optional(args.name, "Name"),
                                      _ask_optional(args.language, "Language")))


async def _create_tenant(settings: Settings, email: str, name: str | None,
                         language: str | None) -> int:
    import secrets
    from uuid import uuid4

    from gateway.auth import discard_credentials, store_credentials
    from projections.platform import queries
    from schemas.platform import commands as cmd
    from schemas.platform.api import LANGUAGES
    from schemas.platform.naming import account_id_for

    account_name = email.split("@")[0]
    workspace_name = name.strip() if name and name.strip() else f"{account_name}'s Workspace"
    workspace_id = uuid4()
    async with _node(settings) as c:
        existing = await queries.account_by_email(c.engine, email)
        if existing is not None:
            await _command(c, cmd.CreateWorkspace(
                workspace_id=workspace_id, name=workspace_name, owner_account_id=existing["id"]),
                aggregate_id=existing["id"], tenant_id=workspace_id, actor_id=existing["id"])
            print(f"Tenant created.\nAccount: {email}\nWorkspace: {workspace_id}")
            return 0
        account_id, password = account_id_for(email), secrets.token_urlsafe(16)
        credentials_id = await store_credentials(c.engine, account_id, password)
        try:
            await _command(c, cmd.CreateWorkspace(
                workspace_id=workspace_id, name=workspace_name, owner_account_id=account_id,
                new_owner=cmd.NewAccount(
                    email=email, name=account_name, credentials_id=credentials_id,
                    interface_language=language if language in LANGUAGES else "en-US")),
                aggregate_id=account_id, tenant_id=workspace_id, actor_id=account_id)
        except OperationError:
            await discard_credentials(c.engine, credentials_id)
            raise
    print(f"Account and tenant created.\nAccount: {email}\nPassword: {password}")
    return 0


def reset_password(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy reset-password`: the account's new password (a new credentials row, named by
    AccountPasswordChanged); its failed-login count is cleared and its sessions end, as a
    forgotten-password reset ends them: the account may be reset because it was taken over,
    and the taker's tokens must stop working."""
    import re
    from datetime import timedelta

    from schemas.platform.api import PASSWORD_PATTERN

    email = _ask(args.email, "Email")
    new_password = _ask(args.new_password, "New password", secret=True)
    confirm = _ask(args.password_confirm, "Password confirm", secret=True)
    if new_password.strip() != confirm.strip():
        raise OperationError("Passwords do not match.", code=1)

    async def reset() -> None:
        from gateway.auth import (
            discard_credentials,
            end_sessions,
            login_failures_key,
            store_credentials,
        )
        from projections.platform import queries
        from schemas.platform import commands as cmd

        async with _node(settings) as c:
            account = await queries.account_by_email(c.engine, email)
            if account is None:
                raise OperationError(f"Account not found for email: {email}", code=1)
            if not re.match(PASSWORD_PATTERN, new_password):
                raise OperationError(f"Invalid password. Must match {PASSWORD_PATTERN}", code=1)
            credentials_id = await store_credentials(c.engine, account["id"], new_password)
            try:
                await _command(c, cmd.ChangePassword(
                    account_id=account["id"], credentials_id=credentials_id),
                    aggregate_id=account["id"], actor_id=account["id"])
            except OperationError:
                await discard_credentials(c.engine, credentials_id)
                raise
            await end_sessions(c.kv, account["id"],
                               timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS))
            await c.kv.delete(login_failures_key(email))

    asyncio.run(reset())
    print("Password reset successfully.")
    return 0


def reset_email(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy reset-email`: the account logs in with the new e-mail from now on."""
    from schemas.platform.api import is_email

    email = _ask(args.email, "Email")
    new_email = _ask(args.new_email, "New email")
    confirm = _ask(args.email_confirm, "Email confirm")
    if new_email.strip() != confirm.strip():
        raise OperationError("New emails do not match.", code=1)

    async def reset() -> None:
        from projections.platform import queries
        from schemas.platform import commands as cmd

        async with _node(settings) as c:
            account = await queries.account_by_email(c.engine, email)
            if account is None:
                raise OperationError(f"Account not found for email: {email}", code=1)
            if not is_email(new_email.strip()):
                raise OperationError(f"Invalid email: {new_email}", code=1)
            await _command(c, cmd.ChangeAccountEmail(account_id=account["id"],
                                                     email=new_email.strip()),
                           aggregate_id=account["id"], actor_id=account["id"])

    asyncio.run(reset())
    print("Email updated successfully.")
    return 0


# --- eddy reset-encrypt-key-pair ----------------------------------------------------------------

# After a pass that found nothing left to re-seal, how long to wait before the last look: a
# request that read the old key just before the rotation began may still be recording what
# it sealed with it (an API key being created, credentials being saved).
RESEAL_GRACE_SECONDS = 2.0

_SECRET_HOLDERS = ("WorkspaceCreated", "ApiKeyCreated", "WorkflowDraftSynced",
                   "WorkflowVersionCreated")


def reset_encrypt_key_pair(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy reset-encrypt-key-pair`: every workspace gets a new key; every secret it stores
    (provider and custom-model credentials, API tokens, workflow secret environment
    variables of drafts and versions) is re-sealed with it by a command, so the events, the
    read models and any rebuild of them hold the new ciphertext; the old key is retired only
    when nothing sealed with it is left and no command that may carry a secret sealed with
    it waits to be recorded (else exit code 1, the old key kept). Dify deletes the
    credentials instead: here nothing becomes unreadable. Interrupted, a second run resumes
    each workspace's rotation."""
    if not args.yes and not _confirmed("Are you sure you want to reset encrypt key pair? "
                                       "This operation cannot be rolled back!"):
        return 1
    return asyncio.run(_reset_encrypt_key_pair(settings))


def _secret_holders(settings: Settings) -> dict[str, list[tuple[str, UUID]]]:
    """Per workspace (tenant id): the aggregates that may hold a sealed secret, as
    (aggregate type, id), from the event store (the read models may lag behind it)."""
    from uuid import UUID

    import psycopg

    holders: dict[str, list[tuple[str, UUID]]] = {}
    with psycopg.connect(settings.database_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT convert_from(state, 'UTF8')::jsonb ->> 'tenant_id',"
            " split_part(topic, ':', 1), originator_id FROM stored_events"
            " WHERE split_part(topic, ':', 2) = ANY(%s)", (list(_SECRET_HOLDERS),)).fetchall()
    for tenant, kind, aggregate_id in sorted(rows, key=lambda r: (r[0] or "", r[1], r[2])):
        if tenant:
            holders.setdefault(tenant, []).append((kind, UUID(str(aggregate_id))))
    return holders


async def _reset_encrypt_key_pair(settings: Settings) -> int:
    """Every workspace's rotation begins, then passes over every secret until one finds
    nothing to re-seal, that twice, RESEAL_GRACE_SECONDS apart (the store is scanned again
    each time: a secret saved under an old key just before its rotation began is found);
    only then are the old keys retired."""
    from collections import Counter
    from uuid import UUID

    from projections.keyring import begin_rotation, retire_previous

    holders = await asyncio.to_thread(_secret_holders, settings)
    if not holders:
        raise OperationError("No workspaces found. Run /install first.", code=1)
    async with _node(settings) as c:
        rotating = [UUID(tenant) for tenant in holders]
        for tenant_id in rotating:
            generation = await begin_rotation(c.engine, settings.SECRET_KEY, tenant_id)
            print(f"Workspace {tenant_id}: re-sealing its secrets with key generation "
                  f"{generation}.", flush=True)
        resealed: Counter[UUID] = Counter()
        unreadable: Counter[UUID] = Counter()
        quiet_once = False
        while True:
            activity = 0
            for tenant, aggregates in holders.items():
                done, changed, lost = await _reseal_pass(c, UUID(tenant), aggregates)
                resealed[UUID(tenant)] += done
                unreadable[UUID(tenant)] = lost
                activity += done + changed
            if activity:
                quiet_once = False
            elif quiet_once:
                break
            else:
                await asyncio.sleep(RESEAL_GRACE_SECONDS)
                # Checked before the last pass: a command recorded until now is found by it.
                waiting = await _sealed_commands_waiting(c)
                if waiting:
                    print(f"The previous keys are kept: {waiting} A command carrying a "
                          "secret sealed with one of them would be unreadable once they are "
                          "retired. Run `eddy reset-encrypt-key-pair` again when there are "
                          "none: it resumes this rotation.", file=sys.stderr, flush=True)
                    return 1
                quiet_once = True
            holders = await asyncio.to_thread(_secret_holders, settings)
        for tenant_id in rotating:
            await retire_previous(c.engine, tenant_id)
            if unreadable[tenant_id]:
                print(f"Workspace {tenant_id}: {unreadable[tenant_id]} secret(s) were "
                      "already unreadable (sealed under another SECRET_KEY) and stay so; "
                      "save them again.", flush=True)
            print(f"Workspace {tenant_id}: {resealed[tenant_id]} secret(s) re-sealed; the "
                  "previous key is retired.")
            print(f"Congratulations! The asymmetric key pair of workspace {tenant_id} has "
                  "been reset.", flush=True)
    return 0


async def _sealed_commands_waiting(c: Container) -> str | None:
    """Why commands sent before the rotation may still be recorded later (the gateway seals
    secrets into SaveProviderCredentials, SaveCustomModel, CreateApiKey, SyncWorkflowDraft):
    the commands group has some unacknowledged, or some were dead-lettered (a replay would
    record them). None when neither."""
    from adapters.bus.redis_streams import RedisStreamsBus
    from schemas.topics import COMMANDS
    from workers.dead_letters import DeadLetterError, DeadLetterQueues

    state = await c.bus.group_state("commands", [COMMANDS])
    if state.oldest_unacked is not None:
        return (f"the commands group has not handled every command yet (the oldest waits "
                f"since {state.oldest_unacked:%Y-%m-%d %H:%M:%S} UTC; is a worker with the "
                "commands role running? `eddy groups` shows it).")
    if not isinstance(c.bus, RedisStreamsBus):
        print("Kafka bus: dead-lettered commands (`commands.dlq`) are not checked; one "
              "replayed after this rotation may carry a secret no key opens.",
              file=sys.stderr, flush=True)
        return None
    try:
        letters = await DeadLetterQueues(c.bus).list(COMMANDS)
    except DeadLetterError:  # the DLQ topic was never registered: nothing was dead-lettered
        return None
    if letters:
        return (f"{len(letters)} dead-lettered command(s) on {COMMANDS}.dlq; replay or drop "
                f"them first (`eddy dlq list {COMMANDS}`).")
    return None


async def _reseal_pass(c: Container, tenant_id: UUID,
                       aggregates: list[tuple[str, UUID]]) -> tuple[int, int, int]:
    """One look at every holder: (re-sealed, changed meanwhile, unreadable) secrets."""
    from commands.platform.aggregates import ApiKey, Workspace
    from commands.workflow.aggregates import WorkflowDraft, WorkflowVersion
    from projections.keyring import workspace_keyring
    from schemas.errors import ApiKeyNotFound, NotFound, SecretChanged

    keyring = await workspace_keyring(c.engine, c.settings.SECRET_KEY, tenant_id)
    kinds = {k.type_name: k for k in (Workspace, ApiKey, WorkflowDraft, WorkflowVersion)}
    counts = [0, 0, 0]
    for kind, aggregate_id in aggregates:
        history = await asyncio.to_thread(c.store.load, aggregate_id)
        aggregate = kinds[kind].replay(aggregate_id, history)
        for what, payload, unreadable in _reseals(keyring, tenant_id, aggregate):
            if payload is None:
                counts[2] += unreadable
                continue
            try:
                await _command(c, payload, aggregate_id=aggregate_id, tenant_id=tenant_id)
            except CommandRefused as exc:
                # saved again, revoked or deleted meanwhile: the next pass reads it again
                if exc.error_code not in (SecretChanged.code, ApiKeyNotFound.code,
                                          NotFound.code):
                    raise
                counts[1] += 1
                continue
            counts[0] += 1
            print(f"Workspace {tenant_id}: re-sealed {what}", flush=True)
    return counts[0], counts[1], counts[2]


def _reseals(keyring: Keyring, tenant_id: UUID,
             aggregate: Workspace | ApiKey | WorkflowDraft | WorkflowVersion
             ) -> Iterator[tuple[str, CommandPayload | None, int]]:
    """The re-seal commands an aggregate needs: (what, command, 0), or (what, None, n) for
    n secrets that do not open (sealed under another SECRET_KEY)."""
    from adapters.secrets import SecretUnreadable
    from commands.platform.aggregates import ApiKey, Workspace
    from commands.workflow.aggregates import WorkflowDraft
    from gateway.auth import API_TOKEN_PURPOSE
    from schemas.platform import commands as pc
    from schemas.platform.providers import credentials_purpose
    from schemas.workflow import commands as wc
    from schemas.workflow.naming import SECRET_VALUE_TYPE, environment_secret_purpose

    def again(purpose: str, ciphertext: str) -> pc.Resealed | None:
        try:
            return pc.Resealed(previous=ciphertext, ciphertext=keyring.seal(
                purpose, keyring.unseal(purpose, ciphertext)))
        except SecretUnreadable:
            return None

    if isinstance(aggregate, Workspace):
        purpose = credentials_purpose(tenant_id)
        for key, ciphertext in sorted(aggregate.sealed.items(), key=str):
            if keyring.is_current(ciphertext):
                continue
            provider, model, model_type = (key, None, None) if isinstance(key, str) else key
            what = f"credentials of {provider}" + (f" model {model}" if model else "")
            resealed = again(purpose, ciphertext)
            if resealed is None:
                yield what, None, 1
            else:
                yield what, pc.ResealProviderCredentials(
                    workspace_id=tenant_id, provider=provider, model=model,
                    model_type=model_type, credentials=resealed), 0  # type: ignore[arg-type]
        return
    if isinstance(aggregate, ApiKey):
        ciphertext = aggregate.token_ciphertext
        if aggregate.revoked or not ciphertext or keyring.is_current(ciphertext):
            return
        resealed = again(API_TOKEN_PURPOSE, ciphertext)
        if resealed is None:
            yield f"api key {aggregate.id}", None, 1
        else:
            yield f"api key {aggregate.id}", pc.ResealApiKeyToken(
                key_id=aggregate.id, token=resealed), 0
        return
    of: Literal["draft", "version"]
    spec, of = ((aggregate.draft, "draft") if isinstance(aggregate, WorkflowDraft)
                else (aggregate.spec, "version"))
    if spec is None:
        return
    purpose = environment_secret_purpose(tenant_id)
    stored: list[dict[str, Any]] = spec.environment_variables
    variables, lost = [], 0
    for variable in stored:
        value = variable.get("value")
        if variable.get("value_type") == SECRET_VALUE_TYPE and value \
                and not keyring.is_current(value):
            resealed = again(purpose, value)
            lost += resealed is None
            variable = {**variable, "value": resealed.ciphertext if resealed else value}
        variables.append(variable)
    what = f"environment of workflow {of} {aggregate.id}"
    if variables != stored:
        yield what, wc.ResealWorkflowEnvironment(
            aggregate_id=aggregate.id, of=of, previous=stored,
            environment_variables=variables), 0
    if lost:
        yield what, None, lost


# --- eddy vdb-migrate -----------------------------------------------------------------------


def vdb_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy vdb-migrate [--scope all|knowledge|annotation]`: into the configured vector
    store (VECTOR_STORE), every high_quality dataset's chunks written again from its indexed
    segments, and every app's annotation reply index from its annotations. Datasets done
    are kept in the key-value store while a migration runs: an interrupted one, run again,
    continues after them; a completed one forgets them. Exit 1 if any failed."""
    return asyncio.run(_vdb_migrate(settings, args.scope))


async def _vdb_migrate(settings: Settings, scope: str) -> int:
    failed = 0
    async with _node(settings) as c:
        if scope in ("knowledge", "all"):
            failed += await _migrate_knowledge(c)
        if scope in ("annotation", "all"):
            failed += await _migrate_annotations(c)
    return 1 if failed else 0


def _failed(what: str, exc: Exception) -> None:
    print(f"Error creating {what} index: {type(exc).__name__} {exc}", file=sys.stderr,
          flush=True)


async def _migrate_knowledge(c: Container) -> int:
    from projections.knowledge import queries as kq
    from workers.knowledge.indexing import IndexingDeps, rewrite_dataset_vectors

    print("Starting vector database migration.", flush=True)
    progress = f"vdb_migrate:{c.settings.VECTOR_STORE}"  # dataset id -> its collection
    deps = IndexingDeps(store=c.store, storage=c.storage, embedding_models=c.embedding_models,
                        vectors=c.vectors, keywords=c.keywords)
    datasets = await kq.high_quality_datasets(c.engine)
    finished = await c.kv.get_fields(progress, [str(d["id"]) for d in datasets])
    created = skipped = failed = 0
    for number, (dataset, done) in enumerate(zip(datasets, finished, strict=True), 1):
        dataset_id = dataset["id"]
        print(f"Processing the {number} dataset {dataset_id}. {created} created, "
              f"{skipped} skipped.", flush=True)
        if done:
            skipped += 1
            continue
        print(f"Migrating dataset {dataset_id}.", flush=True)
        try:
            segments = await kq.indexed_segments(c.engine, dataset_id)
            collection = await rewrite_dataset_vectors(deps, dataset_id, segments)
        except Exception as exc:  # as Dify's: one dataset's failure does not stop the rest
            _failed("dataset", exc)
            failed += 1
            continue
        await c.kv.set_field(progress, str(dataset_id), collection)
        print(f"Created vector index {collection} with {len(segments)} segments for "
              f"dataset {dataset_id}.", flush=True)
        print(f"Successfully migrated dataset {dataset_id}.", flush=True)
        created += 1
    if not failed:
        await c.kv.delete(progress)
    print(f"Migration complete. Created {created} dataset indexes. Skipped {skipped} "
          "datasets.", flush=True)
    return failed


async def _migrate_annotations(c: Container) -> int:
    from projections.platform.queries import all_app_ids
    from workers.conversation.annotations import AnnotationDeps, rewrite_annotation_vectors

    print("Starting annotation data migration.", flush=True)
    deps = AnnotationDeps(store=c.store, engine=c.engine, vectors=c.vectors,
                          embedding_models=c.embedding_models)
    created = skipped = failed = 0
    for number, app_id in enumerate(await all_app_ids(c.engine), 1):
        print(f"Processing the {number} app {app_id}. {created} created, {skipped} "
              "skipped.", flush=True)
        try:
            count = await rewrite_annotation_vectors(deps, app_id)
        except Exception as exc:  # as Dify's: one app's failure does not stop the rest
            _failed("app annotation", exc)
            failed += 1
            continue
        if count is None:
            skipped += 1
            print(f"App annotation setting disabled: {app_id}", flush=True)
            continue
        print(f"Created vector index with {count} annotations for app {app_id}.", flush=True)
        print(f"Successfully migrated app annotation {app_id}.", flush=True)
        created += 1
    print(f"Migration complete. Created {created} app annotation indexes. Skipped {skipped} "
          "apps.", flush=True)
    return failed


# --- eddy remove-orphaned-files-on-storage, eddy clear-orphaned-file-records ----------------

_CAUTION = ("!!! USE WITH CAUTION !!!",
            "This cannot be undone. Please make sure to back up your {what} before proceeding.",
            "It is also recommended to run this during the maintenance window, as this may "
            "cause high load on your instance.")


def _warn(lines: list[str], what: str) -> None:
    for line in [*lines, "", *(c.format(what=what) for c in _CAUTION)]:
        print(line, flush=True)


def remove_orphaned_files_on_storage(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy remove-orphaned-files-on-storage`: files on the storage no record names. Under
    `upload_files/`, those no upload record's key is; under `datasets/<dataset>/<document>/`
    (a document's upload and indexing artifacts), those of a document that no longer
    exists. `tool_files/` (files workflow nodes made) is not scanned: only runs' outputs
    name those, and they are kept as long as the runs."""
    _warn(["This command will find and remove orphaned files on the storage,",
           "by comparing the files on the storage with the records in the following tables:",
           "- upload_files", "- documents",
           "The following paths on the storage will be scanned to find orphaned files:",
           "- upload_files", "- datasets"], "storage")
    if not args.force and not _confirmed("Do you want to proceed?"):
        return 1
    return asyncio.run(_remove_orphaned_files(settings, args.force))


def _orphaned_on_storage(key: str, recorded: set[str],
                         folders: set[tuple[UUID, UUID]]) -> bool:
    from uuid import UUID

    if key.startswith("upload_files/"):
        return key not in recorded
    parts = key.split("/")
    try:
        return (UUID(parts[1]), UUID(parts[2])) not in folders
    except (IndexError, ValueError):
        return True  # under datasets/ but in no document's folder


async def _remove_orphaned_files(settings: Settings, force: bool) -> int:
    from projections.file_references import document_folders, upload_records

    print("Starting orphaned files cleanup.", flush=True)
    async with _node(settings) as c:
        print("- Listing files from table upload_files", flush=True)
        recorded = {r["key"] for r in await upload_records(c.engine)}
        print("- Listing documents from table documents", flush=True)
        folders = await document_folders(c.engine)
        print(f"Found {len(recorded)} files in tables.", flush=True)
        on_storage: list[str] = []
        for path in ("upload_files/", "datasets/"):
            print(f"- Scanning files on storage path {path.rstrip('/')}", flush=True)
            on_storage += await c.storage.scan(path)
        print(f"Found {len(on_storage)} files on storage.", flush=True)
        orphaned = [k for k in on_storage if _orphaned_on_storage(k, recorded, folders)]
        if not orphaned:
            print("No orphaned files found. There is nothing to remove.")
            return 0
        print(f"Found {len(orphaned)} orphaned files.")
        for key in orphaned:
            print(f"- orphaned file: {key}")
        if not force and not _confirmed(
                f"Do you want to proceed to remove all {len(orphaned)} orphaned files?"):
            return 1
        removed = 0
        for key in orphaned:
            await c.storage.delete(key)
            removed += 1
            print(f"- Removing orphaned file: {key}", flush=True)
    print(f"Removed {removed} orphaned files without errors.")
    return 0


def clear_orphaned_file_records(settings: Settings, args: argparse.Namespace) -> int:
    """`eddy clear-orphaned-file-records`: upload records whose file is gone from the storage
    or whose id no message, conversation or workflow run mentions, each cleared by a
    command (FileDeleted). Their bytes, if left, are remove-orphaned-files-on-storage's."""
    from projections.file_references import REFERENCING_COLUMNS

    _warn(["This command will find and delete orphaned file records in the following tables:",
           "- upload_files",
           "The following tables and columns will be scanned to find orphaned file records:",
           *(f"- {col.table.name} ({col.name})" for col in REFERENCING_COLUMNS),
           "Records whose file is no longer on the storage are orphaned too."], "database")
    if not args.force and not _confirmed("Do you want to proceed?"):
        return 1
    return asyncio.run(_clear_orphaned_records(settings, args.force))


async def _clear_orphaned_records(settings: Settings, force: bool) -> int:
    from projections.file_references import referenced_ids, upload_records
    from schemas.conversation.commands import DeleteFileRecord
    from schemas.errors import UploadFileNotFound

    print("Starting orphaned file records cleanup.", flush=True)
    async with _node(settings) as c:
        print("- Listing file records in table upload_files", flush=True)
        records = await upload_records(c.engine)
        print(f"Found {len(records)} files in tables.", flush=True)
        print("- Listing file ids mentioned in messages, conversations and workflow runs",
              flush=True)
        mentioned = await referenced_ids(c.engine)
        print(f"Found {len(mentioned)} file ids in tables.", flush=True)
        orphaned = [r for r in records if str(r["id"]) not in mentioned
                    or not await c.storage.exists(r["key"])]
        if not orphaned:
            print("No orphaned file records found. There is nothing to delete.")
            return 0
        print(f"Found {len(orphaned)} orphaned file records.")
        for record in orphaned:
            print(f"- orphaned file id: {record['id']}")
        if not force and not _confirmed(f"Do you want to proceed to delete all "
                                        f"{len(orphaned)} orphaned file records?"):
            return 1
        print("- Deleting orphaned file records in table upload_files", flush=True)
        removed = 0
        for record in orphaned:
            try:
                await _command(c, DeleteFileRecord(file_id=record["id"]),
                               aggregate_id=record["id"], tenant_id=record["tenant_id"])
            except CommandRefused as exc:  # deleted meanwhile (its app was)
                if exc.error_code != UploadFileNotFound.code:
                    raise
                continue
            removed += 1
    print(f"Removed {removed} orphaned file records.")
    return 0
