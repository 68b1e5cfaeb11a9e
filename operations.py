"""What the operations commands do (`eddy events replay`, `eddy groups`, `eddy topics`):
wiring from the composition root to the layers' modules, and their terminal output.
`cli.py` only registers the arguments."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import orjson

from config import Settings

if TYPE_CHECKING:
    from events.inspect import EventFilter
    from events.replay import ReplayPlan

# The heavy imports (the composition root, rich) are made by the commands that need them,
# so `eddy --help` and the other roles start without them.


class OperationError(Exception):
    """Bad input or a missing thing: printed as `eddy: <message>`, exit code 2 (1 if not found)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def emit(record: dict[str, object], as_json: bool, human: str) -> None:
    print(orjson.dumps(record, default=str).decode() if as_json else human, flush=True)


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


async def replay_events(settings: Settings, selection: EventFilter, group: str | None,
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


async def projections_command(settings: Settings, action: str, projection: str,
                              version: str, switch: bool, as_json: bool) -> int:
    """`eddy projections list|status|rebuild|switch|rollback|drop`."""
    from bootstrap import ASSEMBLY, build_engine
    from events.postgres_store import PostgresEventStore
    from projections import versions as pv
    from projections.layout import newest_layout
    from projections.rebuild import Progress, rebuild
    from projections.tables import metadata

    engine = build_engine(settings)
    try:
        if action in ("list", "status"):
            found = await pv.status(engine, ASSEMBLY.projections.values())
            if not as_json:
                print(_VERSION_HEADER)
            for s in found:
                v = s.version
                lag = "-" if s.lag_events is None else str(s.lag_events)
                emit({**_version_record(v), "lag_events": s.lag_events,
                      "parked": [p.as_json() for p in s.parked],
                      "waiting_events": s.waiting_events}, as_json,
                     f"{v.projection:<12} {v.schema:<14} {v.layout:>6}  {v.state:<12} "
                     f"{'yes' if v.active else '':<6} {lag:>8} {len(s.parked):>7}  "
                     f"{str(v.built_at or '-')[:19]:<19}  {str(v.activated_at or '-')[:19]}")
                if not as_json:
                    for p in s.parked:
                        print(f"    parked: {p.aggregate_type} {p.aggregate_id} "
                              f"v{p.aggregate_version} {p.event_type} (position {p.position}"
                              f", {s.waiting_events} event(s) waiting): {p.error[:200]}")
            if not as_json and any(s.parked for s in found):
                print("parked events wait for you: `eddy dlq replay` once fixed, or `eddy dlq "
                      "drop … --reason` to skip them")
            newest = newest_layout(metadata)
            stale = sorted({s.version.projection for s in found
                            if s.version.active and s.version.layout < newest})
            if action == "status" and stale and not as_json:
                print(f"the code writes layout {newest}: rebuild {', '.join(stale)} to use it")
            return 0
        if action == "rebuild":
            def show(p: Progress) -> None:
                eta = "-" if p.eta_seconds is None else f"{p.eta_seconds:,.0f} s"
                print(f"\r{p.phase:<9} {p.done:>10,}/{p.total:<10,} {p.rate:>10,.0f}/s "
                      f"ETA {eta:<8}", end="", file=sys.stderr, flush=True)

            store = PostgresEventStore(
                ASSEMBLY.event_types, host=settings.DB_HOST or "", port=settings.DB_PORT,
                user=settings.DB_USERNAME, password=settings.DB_PASSWORD,
                dbname=settings.DB_DATABASE)
            try:
                result = await rebuild(engine, settings.database_dsn(), store,
                                       ASSEMBLY.event_types, ASSEMBLY.projections[projection],
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
            if switch:
                await pv.switch(engine, v.projection, v.version)
                print(f"reads now use {v.schema}")
            else:
                print(f"switch reads to it: eddy projections switch {v.projection} {v.version}")
            return 0
        if action == "rollback":
            v = await pv.rollback(engine, projection)
            print(f"reads now use {v.schema}")
            return 0
        number = _version_number(projection, version)
        if action == "switch":
            v = await pv.switch(engine, projection, number)
            print(f"reads now use {v.schema}")
        else:
            v = await pv.drop(engine, projection, number)
            print(f"dropped {v.schema}")
        return 0
    except pv.VersionNotFound as exc:
        raise OperationError(str(exc), code=1) from exc
    except pv.VersionRefused as exc:
        raise OperationError(str(exc)) from exc
    finally:
        await engine.dispose()


async def ensure_topics(settings: Settings, as_json: bool) -> int:
    """Create missing topics and grow those with fewer partitions than configured."""
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


async def show_groups(settings: Settings, as_json: bool, watch: bool, interval: float) -> int:
    import asyncio

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
