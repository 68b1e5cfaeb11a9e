"""The `eddy` command. Roles mirror Dify's entrypoint MODEs: api, worker, scheduler,
migration, job; `eddy up` runs all of them on one machine on embedded servers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from config import ConfigError, Mode, Settings, load_settings
from observability import configure_logging
from operations import OperationError, emit

if TYPE_CHECKING:
    from events.inspect import EventFilter
    from workers.dead_letters import DeadLetterQueues

log = logging.getLogger("eddy")


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def _roles() -> tuple[str, ...]:
    from bootstrap import ASSEMBLY
    from workers.node import all_roles

    return all_roles(ASSEMBLY.work)


def migrate(settings: Settings) -> None:
    from migrations.runner import upgrade

    dsn = settings.database_dsn().replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade(dsn)
    log.info("migrations applied")


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
    from bootstrap import build
    from workers.node import all_roles, start_roles

    if settings.WORKER_METRICS_PORT:
        import prometheus_client

        prometheus_client.start_http_server(settings.WORKER_METRICS_PORT)
    container = await build(settings)
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


class _Server(Protocol):
    """An embedded server (EmbeddedPostgres, EmbeddedRedis) as `eddy up` drives it."""

    @property
    def port(self) -> int: ...
    def start(self) -> object: ...
    def stop(self) -> None: ...
    def is_running(self) -> bool: ...


def _embedded_env(settings: Settings) -> tuple[dict[str, str], dict[str, _Server]]:
    """Start embedded Postgres/Valkey as needed; the env that points children at them."""
    from adapters.embedded.postgres import EmbeddedPostgres
    from adapters.embedded.valkey import EmbeddedRedis

    data = settings.EDDY_DATA_DIR.resolve()
    data.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    started: dict[str, _Server] = {}
    if settings.embedded_postgres:
        print(f"starting embedded Postgres in {data / 'postgres'} …", flush=True)
        pg = EmbeddedPostgres(data / "postgres").start()
        pg.create_database(settings.DB_DATABASE)
        started["postgres"] = pg
        env.update(DB_HOST=pg.host, DB_PORT=str(pg.port), DB_USERNAME=pg.user, DB_PASSWORD="")
    if settings.embedded_redis:
        print(f"starting embedded Redis (Valkey, AOF) in {data / 'redis'} …", flush=True)
        rs = EmbeddedRedis(data / "redis").start()
        started["valkey"] = rs
        env.update(REDIS_HOST=rs.host, REDIS_PORT=str(rs.port), REDIS_PASSWORD="", REDIS_DB="0")
    if not settings.SECRET_KEY:
        key_file = data / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(42))
            key_file.chmod(0o600)
        env["SECRET_KEY"] = key_file.read_text().strip()
    # The servers' ports change from one start to the next: the operations commands
    # (`eddy events …` in another terminal) read them here while `eddy up` runs.
    servers_env = data / SERVERS_ENV
    servers_env.touch(mode=0o600)
    servers_env.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return env, started


SERVERS_ENV = "servers.env"


def _servers_of_running_up(settings: Settings) -> Settings:
    """An operations command run beside `eddy up` without DB_HOST / REDIS_HOST: the
    settings of the servers that `eddy up` started."""
    servers_env = settings.EDDY_DATA_DIR.resolve() / SERVERS_ENV
    if not (settings.embedded_postgres or settings.embedded_redis) or not servers_env.exists():
        return settings
    for line in servers_env.read_text().splitlines():
        key, _, value = line.partition("=")
        os.environ.setdefault(key, value)
    return load_settings()


_SUPERVISE_INTERVAL = 0.5
_STABLE_SECONDS = 10.0  # up this long since its (re)start: a death is not a crash loop
_MAX_BACKOFF = 30.0


@dataclass
class _Supervised:
    """A process `eddy up` keeps alive (a role child or an embedded server): restarted
    when it dies, after a growing delay while it keeps dying soon after each restart."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], object]
    info: Callable[[], dict[str, object]]
    started_at: float = -_STABLE_SECONDS  # its first death restarts it at once
    crashes: int = 0  # deaths in a row, each soon after its (re)start
    retry_at: float | None = None  # set while it is down

    def check(self) -> None:
        now = time.monotonic()
        if self.retry_at is None:
            if self.alive():
                return
            self.crashes = self.crashes + 1 if now - self.started_at < _STABLE_SECONDS else 0
            self.retry_at = self._retry_later(now, "service died, restarting")
        if now < self.retry_at:
            return
        try:
            self.restart()
        except Exception:
            self.crashes += 1
            self.retry_at = self._retry_later(time.monotonic(), "restart failed", exc_info=True)
            return
        self.started_at, self.retry_at = time.monotonic(), None
        log.info("service restarted", extra={"service": self.name, **self.info()})

    def _retry_later(self, now: float, why: str, exc_info: bool = False) -> float:
        """When to try again: at once after a stable run, then 2, 4, … 30 s apart."""
        delay = min(2.0 ** self.crashes, _MAX_BACKOFF) if self.crashes else 0.0
        log.error(why, exc_info=exc_info,
                  extra={"service": self.name, "retry_in": delay, **self.info()})
        return now + delay


def up(settings: Settings) -> int:
    """Everything on one machine: embedded servers, migrations, api + worker supervised."""
    env, servers = _embedded_env(settings)
    child_env = {**os.environ, **env}
    migrate(load_settings(**{k: v for k, v in env.items() if k in Settings.model_fields}))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    def spawn(role: str) -> None:
        procs[role] = subprocess.Popen([sys.executable, "-m", "cli", role],
                                       env=child_env, cwd=Path(__file__).parent)

    def child(role: str) -> _Supervised:
        spawn(role)
        return _Supervised(role, alive=lambda: procs[role].poll() is None,
                           restart=lambda: spawn(role),
                           info=lambda: {"code": procs[role].returncode})

    def server(name: str, srv: _Server) -> _Supervised:
        # Restarted on its data dir and port: the children keep DB_PORT / REDIS_PORT and
        # reconnect by themselves once it answers again.
        return _Supervised(name, alive=srv.is_running, restart=srv.start,
                           info=lambda: {"port": srv.port})

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        supervised = [server(name, srv) for name, srv in servers.items()]
        supervised += [child("api"), child("worker")]
        print(f"Eddy is up: http://{settings.DIFY_BIND_ADDRESS}:{settings.DIFY_PORT} "
              f"(bus: {settings.bus.value}); Ctrl-C stops it", flush=True)
        while not stopping:
            for unit in supervised:
                if stopping:
                    break  # what dies while we stop (children on Ctrl-C) stays down
                unit.check()
            time.sleep(_SUPERVISE_INTERVAL)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            if proc.poll() is None:
                proc.kill()
        for srv in reversed(servers.values()):
            srv.stop()
        (settings.EDDY_DATA_DIR.resolve() / SERVERS_ENV).unlink(missing_ok=True)
        print("Eddy stopped.", flush=True)
    return 0


def _job(settings: Settings, name: str) -> int:
    from bootstrap import ASSEMBLY, build
    from workers.scheduler import run_job

    if name not in ASSEMBLY.jobs:
        print(f"unknown job {name!r}; jobs: {', '.join(ASSEMBLY.jobs)}", file=sys.stderr)
        return 2

    async def run() -> None:
        container = await build(settings)
        try:
            await run_job(container, ASSEMBLY.jobs[name])
        finally:
            await container.close()

    asyncio.run(run())
    return 0


# operations: `eddy events …`, `eddy dlq …` -------------------------------------------------


_EVENT_HEADER = f"{'POSITION':>9}  {'OCCURRED_AT':<19}  {'TENANT':<36}  {'AGGREGATE':<60}  TYPE"


def _event_line(summary: dict[str, object]) -> str:
    aggregate = (f"{summary['aggregate_type']}:{summary['aggregate_id']}"
                 f"@{summary['aggregate_version']}")
    return (f"{summary['position']:>9}  {str(summary['occurred_at'])[:19]:<19}  "
            f"{summary['tenant_id'] or '-':<36}  {aggregate:<60}  {summary['type']}")


def _event_filter(args: argparse.Namespace) -> EventFilter:
    from events.inspect import EventFilter, parse_time, parse_uuid

    for name in ("from_position", "to_position"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise OperationError(f"--{name.replace('_', '-')} must be 1 or more")
    return EventFilter(
        tenant=parse_uuid(args.tenant, "--tenant") if args.tenant else None,
        aggregate=parse_uuid(args.aggregate, "--aggregate") if args.aggregate else None,
        type=args.type, from_position=args.from_position, to_position=args.to_position,
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        dataset=parse_uuid(args.dataset, "--dataset") if args.dataset else None)


def _events(settings: Settings, args: argparse.Namespace) -> int:
    import orjson
    import psycopg

    from bootstrap import ASSEMBLY
    from events.inspect import EventQueryError, find_event, follow, list_events

    try:
        if args.action == "replay":
            from operations import replay_events

            return asyncio.run(replay_events(
                settings, _event_filter(args), args.group, args.dry_run,
                args.allow_side_effects, args.json))
        with psycopg.connect(settings.database_dsn(), autocommit=True) as conn:
            if args.action == "show":
                row = find_event(conn, args.ref)
                if row is None:
                    raise OperationError(f"no event {args.ref}", code=1)
                envelope = row.envelope(ASSEMBLY.event_types)
                print(orjson.dumps(envelope, option=0 if args.json else orjson.OPT_INDENT_2,
                                   default=str).decode(), flush=True)
                return 0
            event_filter = _event_filter(args)
            if not args.json:
                print(_EVENT_HEADER, flush=True)
            if args.action == "list":
                rows = list_events(conn, event_filter, args.limit)
            else:
                rows = follow(conn, event_filter)
            for count, row in enumerate(rows, start=1):
                emit(row.summary(), args.json, _event_line(row.summary()))
                if args.action == "tail" and args.count and count >= args.count:
                    break
    except EventQueryError as exc:
        raise OperationError(str(exc)) from exc
    except KeyboardInterrupt:
        pass  # tail: Ctrl-C is the way out
    return 0


def _dlq_line(summary: dict[str, object]) -> str:
    error = str(summary["error"]).replace("\n", " ")
    return (f"{summary['topic']}  {summary['id']}  key={summary['key']}  "
            f"group={summary['group']}  attempts={summary['attempts']}  "
            f"replays={summary['replays']}  first={summary['first_failed_at']}  "
            f"last={summary['last_failed_at']}\n    {error[:200]}")


async def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.bus.redis_streams import RedisStreamsBus
    from bootstrap import ASSEMBLY, build_bus, build_engine, topic_specs
    from events.postgres_store import PostgresEventStore
    from projections.versions import ReadModels
    from workers.dead_letters import DeadLetterError, DeadLetterQueues, ParkedSkips

    bus = build_bus(settings)
    if not isinstance(bus, RedisStreamsBus):
        raise OperationError("`eddy dlq` needs the Redis Streams bus (EVENT_BUS=redis); on "
                             "Kafka read `<topic>.dlq` with your Kafka tools (a consumer "
                             "group of your own, so the DLQ is not consumed for others)")
    await bus.start()
    read_models = ReadModels(build_engine(settings))
    store = PostgresEventStore(
        ASSEMBLY.event_types, host=settings.DB_HOST or "", port=settings.DB_PORT,
        user=settings.DB_USERNAME, password=settings.DB_PASSWORD, dbname=settings.DB_DATABASE)
    try:
        await bus.ensure_topics(topic_specs(settings))
        queues = DeadLetterQueues(bus, ParkedSkips(read_models, store, ASSEMBLY.event_types,
                                                   ASSEMBLY.projections))
        try:
            return await _dlq_action(queues, args)
        except DeadLetterError as exc:
            raise OperationError(str(exc), code=1) from exc
    finally:
        store.close()
        await read_models.database.dispose()
        await bus.stop()


async def _dlq_action(queues: DeadLetterQueues, args: argparse.Namespace) -> int:
    if args.action == "list":
        topics = [args.topic] if args.topic else await queues.topics()
        total = 0
        for topic in topics:
            for letter in await queues.list(topic, args.group):
                total += 1
                emit(letter.summary(), args.json, _dlq_line(letter.summary()))
        if not args.json:
            print(f"{total} dead letter(s)", flush=True)
        return 0
    if args.action == "show":
        import orjson

        detail = (await queues.get(args.topic, args.id)).detail()
        print(orjson.dumps(detail, option=0 if args.json else orjson.OPT_INDENT_2,
                           default=str).decode(), flush=True)
        return 0
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
    return 0


def _add_operations(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser("events", help="read the event store (list, show, tail)")
    eactions = events.add_subparsers(dest="action", required=True)
    for name, text in (("list", "matching events (the latest --limit; from --from-position on)"),
                       ("tail", "follow new matching events until Ctrl-C"),
                       ("replay", "re-deliver matching events to one group or all")):
        action = eactions.add_parser(name, help=text)
        action.add_argument("--tenant", help="tenant (workspace) id")
        action.add_argument("--aggregate", help="aggregate id: its whole history")
        action.add_argument("--type", help="event type, or AggregateType:EventType")
        action.add_argument("--from-position", type=int, help="first position (inclusive)")
        action.add_argument("--to-position", type=int, help="last position (inclusive)")
        action.add_argument("--since", help="occurred at or after (ISO-8601; UTC if no zone)")
        action.add_argument("--until", help="occurred before (ISO-8601; UTC if no zone)")
        action.add_argument("--dataset", help="a dataset's events and its documents' and "
                                              "segments' (scans the event store)")
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
    show.add_argument("ref", help="global position or event id")
    show.add_argument("--json", action="store_true", help="one JSON line")

    dlq = sub.add_parser("dlq", help="dead letters (list, show, replay, drop); Redis bus")
    dactions = dlq.add_subparsers(dest="action", required=True)
    dlist = dactions.add_parser("list", help="dead letters per topic")
    dlist.add_argument("--topic", help="topic (or its .dlq); default: all")
    dlist.add_argument("--group", help="only those this consumer group failed")
    dlist.add_argument("--json", action="store_true", help="JSON lines")
    dshow = dactions.add_parser("show", help="one dead letter, with its traceback")
    dshow.add_argument("topic")
    dshow.add_argument("id")
    dshow.add_argument("--json", action="store_true", help="one JSON line")
    for name, text in (("replay", "publish to the source topic again, then remove"),
                       ("drop", "give up on it (recorded on <topic>.dlq.dropped)")):
        action = dactions.add_parser(name, help=text)
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
    groups.set_defaults(action="show")
    topics = sub.add_parser("topics", help="topics and their partition counts")
    tactions = topics.add_subparsers(dest="action", required=True)
    ensure = tactions.add_parser("ensure", help="create missing topics, grow those with "
                                               "fewer partitions than configured")
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
        action.add_argument("--json", action="store_true", help="JSON lines")
    rebuild = pactions.add_parser("rebuild", help="build the next version from the event "
                                                  "store beside the live one, catch it up")
    rebuild.add_argument("projection", choices=names)
    rebuild.add_argument("--switch", action="store_true", help="switch reads to it when done")
    for name, text in (("switch", "make reads use this version (caught up, live)"),
                       ("drop", "remove a version reads do not use")):
        action = pactions.add_parser(name, help=text)
        action.add_argument("projection", choices=names)
        action.add_argument("version", help="its number (2) or schema (console_v2)")
    rollback = pactions.add_parser("rollback", help="switch back to the version active before")
    rollback.add_argument("projection", choices=names)


OPERATIONS = ("events", "dlq", "projections", "groups", "topics")


def _operations(settings: Settings, args: argparse.Namespace) -> int:
    from operations import ensure_topics, show_groups

    try:
        if args.command == "events":
            return _events(settings, args)
        if args.command == "projections":
            from operations import projections_command

            return asyncio.run(projections_command(
                settings, args.action, getattr(args, "projection", ""),
                getattr(args, "version", ""), getattr(args, "switch", False),
                getattr(args, "json", False)))
        if args.command == "groups":
            return asyncio.run(show_groups(settings, args.json, args.watch, args.interval))
        if args.command == "topics":
            return asyncio.run(ensure_topics(settings, args.json))
        return asyncio.run(_dlq(settings, args))
    except OperationError as exc:
        print(f"eddy {args.command} {args.action}: {exc}", file=sys.stderr)
        return exc.code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eddy", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("up", help="run everything on embedded servers (data in EDDY_DATA_DIR)")
    sub.add_parser("api", help="serve the HTTP gateway")
    worker = sub.add_parser("worker", help="run relay / processors / scheduler roles")
    worker.add_argument("--roles", default=None,
                        help=f"comma-separated subset of: {','.join(_roles())} (default: all)")
    worker.add_argument("--member", default=None, help="consumer-group member name")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="members per consumer group in this process (named <member>.1…N)")
    sub.add_parser("scheduler", help="run the scheduler role alone")
    sub.add_parser("migrate", help="apply database migrations")
    job = sub.add_parser("job", help="run one scheduled job once")
    job.add_argument("name")
    _add_operations(sub)
    _add_projections(sub)
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"eddy: {exc}", file=sys.stderr)
        return 2
    command = args.command or {
        Mode.API: "api", Mode.WORKER: "worker", Mode.SCHEDULER: "scheduler",
        Mode.MIGRATION: "migrate", Mode.JOB: "job", Mode.ALL: "up",
    }[settings.MODE]
    configure_logging(settings.LOG_LEVEL, role=command)

    if command == "up":
        return up(settings)
    if command in OPERATIONS:
        settings = _servers_of_running_up(settings)
    if command in ("api", "worker", "scheduler", "migrate", "job", *OPERATIONS) and (
        settings.embedded_postgres or settings.embedded_redis
    ):
        print("eddy: DB_HOST and REDIS_HOST must be set for this role "
              "(or use `eddy up` for embedded servers; an operations command run beside "
              "`eddy up`, in the same folder, finds its servers)", file=sys.stderr)
        return 2
    if command in OPERATIONS:
        return _operations(settings, args)
    if command == "migrate":
        migrate(settings)
        return 0
    try:
        if command == "api":
            if settings.MIGRATION_ENABLED:
                migrate(settings)
            asyncio.run(_serve_api(settings))
            return 0
        if command == "worker":
            roles = args.roles.split(",") if getattr(args, "roles", None) else None
            concurrency = getattr(args, "concurrency", 1)
            if concurrency < 1:
                print("eddy worker: --concurrency must be 1 or more", file=sys.stderr)
                return 2
            asyncio.run(_run_worker(settings, roles, getattr(args, "member", None), concurrency))
            return 0
        if command == "scheduler":
            asyncio.run(_run_worker(settings, ["scheduler"], None))
            return 0
    except ConfigError as exc:  # e.g. a topic with fewer partitions than configured
        print(f"eddy {command}: {exc}", file=sys.stderr)
        return 2
    return _job(settings, getattr(args, "name", ""))


if __name__ == "__main__":
    sys.exit(main())
