"""`eddy up`: everything on one machine. Embedded Postgres and Valkey, migrations, then the
api and worker roles as child processes; each of them is restarted when it dies, with a
growing delay while it keeps dying (a crash loop must not spin the machine)."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from config import Settings, load_settings

log = logging.getLogger("eddy")


SERVERS_ENV = "servers.env"  # in EDDY_DATA_DIR while `eddy up` runs


def mail_destination(settings: Settings) -> str:
    """Where mails go (invitations, codes): the outbox folder unless MAIL_TYPE=smtp."""
    if settings.MAIL_TYPE == "smtp":
        return f"mail: sent through {settings.SMTP_SERVER}:{settings.SMTP_PORT}"
    return f"mail: written as .eml files to {settings.outbox_dir().resolve()}"


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



def servers_of_running_up(settings: Settings) -> Settings:
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
    from migrations.runner import migrate

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
        print(mail_destination(settings), flush=True)
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
