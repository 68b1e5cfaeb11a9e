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
