"""The `eddy` command. Roles mirror Dify's entrypoint MODEs: api, worker, scheduler,
migration, job; `eddy up` runs all of them on one machine on embedded servers."""

# Each subcommand names the function that runs it (`set_defaults(run=…)`): the roles are
# here, `eddy up` is supervisor.py, the operations commands are operations.py.

from __future__ import annotations

import argparse
import asyncio
import ctypes
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

import operations
from config import ConfigError, Mode, Settings, load_settings
from observability import configure_logging
from supervisor import servers_of_running_up, up

log = logging.getLogger("eddy")

Run = Callable[[Settings, argparse.Namespace], int]


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


# glibc's mallopt parameters, and what a long-running role sets them to (see _bound_heap)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_HEAP_SETTINGS = {_M_ARENA_MAX: 2, _M_MMAP_THRESHOLD: 128 * 1024, _M_TRIM_THRESHOLD: 128 * 1024}
_HEAP_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _bound_heap() -> None:
    """glibc's defaults let a long-running process keep memory it freed: each thread that
    allocates (psycopg's calls in asyncio's pool) may get an arena of its own, and every
    large buffer freed raises the size under which later ones come from the heap, where
    freed holes stay mapped. Over 10,000 chat messages the worker's RSS grew 56-63 MB while
    its live Python allocations stayed flat (tracemalloc); with two arenas and buffers over
    128 KiB mapped apart, api + worker grew 33-35 MB instead of 62-69 (bench.memory). The
    cost: a local embedding model's large arrays are mapped afresh each pass (~20% more
    CPU per batch). An operator's own MALLOC_* settings win; not glibc: nothing to do.
    Workers that only index (`_indexing_only`) are not bounded: there the model's passes are
    nearly all the work, and the bound cost them more than its memory is worth (README,
    Benchmarks, bench.indexing)."""
    if any(name in os.environ for name in _HEAP_ENV):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    for parameter, value in _HEAP_SETTINGS.items():
        mallopt(parameter, value)


def _indexing_only(roles: Sequence[str] | None) -> bool:
    """Whether a worker runs the indexing lanes and nothing else (`eddy worker --roles
    knowledge.indexing-bulk,knowledge.indexing-priority`)."""
    from contexts.knowledge import INDEXING_BULK, INDEXING_PRIORITY, KNOWLEDGE

    lanes = {KNOWLEDGE.role(work) for work in (INDEXING_BULK, INDEXING_PRIORITY)}
    return bool(roles) and set(roles or ()) <= lanes


def _roles() -> tuple[str, ...]:
    from bootstrap import ASSEMBLY
    from workers.node import all_roles

    return all_roles(ASSEMBLY.work)


async def _serve_api(settings: Settings) -> None:
    import uvicorn

    from bootstrap import build
    from gateway.app import create_app

    container = await build(settings, listen=True)
    config = uvicorn.Config(create_app(container), host=settings.DIFY_BIND_ADDRESS,
                            port=settings.DIFY_PORT, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    try:
        await server.serve()
    finally:
        await container.close()


async def _run_worker(settings: Settings, roles: Sequence[str] | None,
                      member: str | None, concurrency: int = 1) -> None:
    from bootstrap import WORKER_CHANNELS, build
    from workers.node import all_roles, start_roles

    if settings.WORKER_METRICS_PORT:
        import prometheus_client

        prometheus_client.start_http_server(settings.WORKER_METRICS_PORT)
    container = await build(settings, listen=True, channels=WORKER_CHANNELS)
    roles = all_roles(container.work) if roles is None else roles
    stop = asyncio.Event()
    _install_stop(stop)
    tasks = start_roles(container, roles, stop, member, concurrency)
    log.info("worker running", extra={"roles": list(roles)})
    try:
        await stop.wait()
        await asyncio.wait(tasks, timeout=10)
    finally:
        for task in tasks:
            task.cancel()
        await container.close()


def serve_api(settings: Settings, args: argparse.Namespace) -> int:
    from migrations.runner import migrate

    if settings.MIGRATION_ENABLED:
        migrate(settings)
    _bound_heap()
    asyncio.run(_serve_api(settings))
    return 0


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    # getattr: with no command, MODE=worker runs this without the worker's arguments
    roles = args.roles.split(",") if getattr(args, "roles", None) else None
    concurrency = getattr(args, "concurrency", 1)
    if concurrency < 1:
        print("eddy worker: --concurrency must be 1 or more", file=sys.stderr)
        return 2
    if not _indexing_only(roles):
        _bound_heap()
    asyncio.run(_run_worker(settings, roles, getattr(args, "member", None), concurrency))
    return 0


def run_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    _bound_heap()
    asyncio.run(_run_worker(settings, ["scheduler"], None))
    return 0


def run_migrations(settings: Settings, args: argparse.Namespace) -> int:
    from migrations.runner import migrate

    migrate(settings)
    return 0


def run_job(settings: Settings, args: argparse.Namespace) -> int:
    from bootstrap import ASSEMBLY, build
    from workers.scheduler import run_job as run_declared_job

    name = getattr(args, "name", "")  # MODE=job with no command names no job
    if name not in ASSEMBLY.jobs:
        print(f"unknown job {name!r}; jobs: {', '.join(ASSEMBLY.jobs)}", file=sys.stderr)
        return 2

    async def run() -> None:
        container = await build(settings)
        try:
            await run_declared_job(container, ASSEMBLY.jobs[name])
        finally:
            await container.close()

    asyncio.run(run())
    return 0


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    return up(settings)


def _on_servers(run: Run) -> Run:
    """A role on servers of its own (DB_HOST, REDIS_HOST): the embedded ones are `eddy up`'s.
    A configuration the servers refuse (a topic with fewer partitions than configured) is
    said in one line."""

    @functools.wraps(run)
    def checked(settings: Settings, args: argparse.Namespace) -> int:
        if settings.embedded_postgres or settings.embedded_redis:
            print("eddy: DB_HOST and REDIS_HOST must be set for this role "
                  "(or use `eddy up` for embedded servers; an operations command run beside "
                  "`eddy up`, in the same folder, finds its servers)", file=sys.stderr)
            return 2
        try:
            return run(settings, args)
        except ConfigError as exc:
            print(f"eddy {args.command}: {exc}", file=sys.stderr)
            return 2

    return checked


def _operation(run: Run) -> Run:
    """An operations command: run beside `eddy up` it uses that one's servers; bad input is
    `eddy <command> <action>: <message>` and its exit code."""
    on_servers = _on_servers(run)

    @functools.wraps(run)
    def operate(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return on_servers(servers_of_running_up(settings), args)
        except operations.OperationError as exc:
            action = getattr(args, "action", None)
            print(f"eddy {args.command}{f' {action}' if action else ''}: {exc}",
                  file=sys.stderr)
            return exc.code

    return operate


# name: (help, run); in `eddy --help` order
ROLES: dict[str, tuple[str, Run]] = {
    "up": ("run everything on embedded servers (data in EDDY_DATA_DIR)", run_up),
    "api": ("serve the HTTP gateway", _on_servers(serve_api)),
    "worker": ("run relay / processors / scheduler roles", _on_servers(run_worker)),
    "scheduler": ("run the scheduler alone (one leader at a time; MODE=beat)",
                  _on_servers(run_scheduler)),
    "migrate": ("apply database migrations", _on_servers(run_migrations)),
    "job": ("run one scheduled job once", _on_servers(run_job)),
}
MODE_ROLES = {Mode.API: "api", Mode.WORKER: "worker", Mode.SCHEDULER: "scheduler",
              Mode.BEAT: "scheduler", Mode.MIGRATION: "migrate", Mode.JOB: "job", Mode.ALL: "up"}


def _add_roles(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parsers = {}
    for name, (text, run) in ROLES.items():
        parsers[name] = sub.add_parser(name, help=text)
        parsers[name].set_defaults(run=run)
    worker = parsers["worker"]
    worker.add_argument("--roles", default=None,
                        help=f"comma-separated subset of: {','.join(_roles())} (default: all)")
    worker.add_argument("--member", default=None, help="consumer-group member name")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="members per consumer group in this process (named <member>.1…N)")
    parsers["job"].add_argument("name")


def _add_operations(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser("events", help="read the event store (list, show, tail)")
    eactions = events.add_subparsers(dest="action", required=True)
    for name, text, run in (
            ("list", "matching events (the latest --limit; from --from-position on)",
             operations.list_events),
            ("tail", "follow new matching events until Ctrl-C", operations.tail_events),
            ("replay", "re-deliver matching events to one group or all",
             operations.replay_events)):
        action = eactions.add_parser(name, help=text)
        action.set_defaults(run=_operation(run))
        action.add_argument("--tenant", help="tenant (workspace) id")
        action.add_argument("--aggregate", help="aggregate id: its whole history")
        action.add_argument("--type", help="event type, or AggregateType:EventType")
        action.add_argument("--from-position", type=int, help="first position (inclusive)")
        action.add_argument("--to-position", type=int, help="last position (inclusive)")
        action.add_argument("--since", help="occurred at or after (ISO-8601; UTC if no zone)")
        action.add_argument("--until", help="occurred before (ISO-8601; UTC if no zone)")
        action.add_argument("--dataset", help="a dataset's events and its documents' and "
                                              "segments' (scans the event store)")
        action.add_argument("--app", help="an app's events and its workflow runs', drafts', "
                                          "conversations'... (scans the event store)")
        action.add_argument("--json", action="store_true", help="JSON lines")
        if name == "list":
            action.add_argument("--limit", type=int, default=50)
        elif name == "tail":
            action.add_argument("--count", type=int, default=0,
                                help="stop after this many events (default: never)")
        else:
            target = action.add_mutually_exclusive_group(required=True)
            target.add_argument("--group", help="only this consumer group handles them")
            target.add_argument("--republish", action="store_true",
                                help="to their topics: every group there handles them")
            action.add_argument("--dry-run", action="store_true",
                                help="print counts per event type and receiving group only")
            action.add_argument("--allow-side-effects", action="store_true",
                                help="side-effecting groups (mail, webhooks, LLM) act too")
    show = eactions.add_parser("show", help="one event: full envelope and payload")
    show.set_defaults(run=_operation(operations.show_event))
    show.add_argument("ref", help="global position or event id")
    show.add_argument("--json", action="store_true", help="one JSON line")

    dlq = sub.add_parser("dlq", help="dead letters (list, show, replay, drop); Redis bus")
    dactions = dlq.add_subparsers(dest="action", required=True)
    dlist = dactions.add_parser("list", help="dead letters per topic")
    dlist.set_defaults(run=_operation(operations.list_dead_letters))
    dlist.add_argument("--topic", help="topic (or its .dlq); default: all")
    dlist.add_argument("--group", help="only those this consumer group failed")
    dlist.add_argument("--json", action="store_true", help="JSON lines")
    dshow = dactions.add_parser("show", help="one dead letter, with its traceback")
    dshow.set_defaults(run=_operation(operations.show_dead_letter))
    dshow.add_argument("topic")
    dshow.add_argument("id")
    dshow.add_argument("--json", action="store_true", help="one JSON line")
    for name, text in (("replay", "publish to the source topic again, then remove"),
                       ("drop", "give up on it (recorded on <topic>.dlq.dropped)")):
        action = dactions.add_parser(name, help=text)
        action.set_defaults(run=_operation(operations.settle_dead_letters))
        action.add_argument("topic")
        action.add_argument("id", nargs="?")
        action.add_argument("--all", action="store_true", help="every dead letter of topic")
        if name == "drop":
            action.add_argument("--reason", help="why (required; recorded)")

    groups = sub.add_parser("groups", help="consumer groups: members, partitions, lag, rate")
    groups.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    groups.add_argument("--interval", type=float, default=1.0,
                        help="seconds between samples (throughput is measured over it)")
    groups.add_argument("--json", action="store_true", help="JSON lines, one per group")
    groups.set_defaults(action="show", run=_operation(operations.show_groups))
    topics = sub.add_parser("topics", help="topics and their partition counts")
    tactions = topics.add_subparsers(dest="action", required=True)
    ensure = tactions.add_parser("ensure", help="create missing topics, grow those with "
                                               "fewer partitions than configured")
    ensure.set_defaults(run=_operation(operations.ensure_topics))
    ensure.add_argument("--json", action="store_true", help="JSON lines")


def _add_projections(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bootstrap import ASSEMBLY

    names = sorted(ASSEMBLY.projections)
    projections = sub.add_parser("projections",
                                 help="read-model versions (list, status, rebuild, switch, "
                                      "rollback, drop)")
    pactions = projections.add_subparsers(dest="action", required=True)
    for name, text in (("list", "every version: state, layout, which one reads use"),
                       ("status", "every version with its lag behind the event store")):
        action = pactions.add_parser(name, help=text)
        action.set_defaults(run=_operation(operations.list_versions))
        action.add_argument("--json", action="store_true", help="JSON lines")
    rebuild = pactions.add_parser("rebuild", help="build the next version from the event "
                                                  "store beside the live one, catch it up")
    rebuild.set_defaults(run=_operation(operations.rebuild_version))
    rebuild.add_argument("projection", choices=names)
    rebuild.add_argument("--switch", action="store_true", help="switch reads to it when done")
    for name, text in (("switch", "make reads use this version (caught up, live)"),
                       ("drop", "remove a version reads do not use")):
        action = pactions.add_parser(name, help=text)
        action.set_defaults(run=_operation(operations.change_version))
        action.add_argument("projection", choices=names)
        action.add_argument("version", help="its number (2) or schema (console_v2)")
    rollback = pactions.add_parser("rollback", help="switch back to the version active before")
    rollback.set_defaults(run=_operation(operations.change_version))
    rollback.add_argument("projection", choices=names)


def _add_dify_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Dify's operator commands (its api/commands.py), with its names and options."""
    for name, text, run, options in (
            ("create-tenant", "Create account and tenant.", operations.create_tenant,
             (("--email", "Tenant account email."), ("--name", "Workspace name."),
              ("--language", "Account language, default: en-US."))),
            ("reset-password", "Reset the account password.", operations.reset_password,
             (("--email", "Account email to reset password for"),
              ("--new-password", "New password"), ("--password-confirm",
                                                   "Confirm new password"))),
            ("reset-email", "Reset the account email.", operations.reset_email,
             (("--email", "Current account email"), ("--new-email", "New email"),
              ("--email-confirm", "Confirm new email")))):
        command = sub.add_parser(name, help=text)
        command.set_defaults(run=_operation(run))
        for option, option_help in options:
            command.add_argument(option, help=option_help)
    reset_keys = sub.add_parser(
        "reset-encrypt-key-pair",
        help="Reset the encryption key of every workspace: every stored secret (provider "
             "credentials, API tokens, secret environment variables) is re-sealed with the "
             "new key, nothing becomes unreadable; the old key is retired.")
    reset_keys.set_defaults(run=_operation(operations.reset_encrypt_key_pair))
    reset_keys.add_argument("--yes", action="store_true",
                            help="Confirm the action without prompting.")
    vdb = sub.add_parser("vdb-migrate", help="Migrate vector db.")
    vdb.set_defaults(run=_operation(operations.vdb_migrate))
    vdb.add_argument("--scope", default="all", choices=("all", "knowledge", "annotation"),
                     help="The scope of vector database to migrate, Default is All.")
    for name, text, run in (
            ("remove-orphaned-files-on-storage", "Remove orphaned files on the storage.",
             operations.remove_orphaned_files_on_storage),
            ("clear-orphaned-file-records", "Clear orphaned file records.",
             operations.clear_orphaned_file_records)):
        cleanup = sub.add_parser(name, help=text)
        cleanup.set_defaults(run=_operation(run))
        cleanup.add_argument("-f", "--force", action="store_true",
                             help="Skip user confirmation and force the command to execute.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eddy", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    _add_roles(sub)
    _add_operations(sub)
    _add_projections(sub)
    _add_dify_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"eddy: {exc}", file=sys.stderr)
        return 2
    if args.command is None:  # as Dify's entrypoint: MODE names the role
        args.command = MODE_ROLES[settings.MODE]
        args.run = ROLES[args.command][1]
    configure_logging(settings.LOG_LEVEL, role=args.command)
    return int(args.run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
