"""Shared fixtures: real Postgres, Valkey and (on demand) a Kafka-protocol broker.

Servers are started once per session on free loopback ports under a private temporary
directory and stopped at the end. Session fixtures are only created when a test asks for them, so a
unit-test run never starts anything and the broker only starts for Kafka tests.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.process import LoopbackServer
from adapters.embedded.tansu import TansuBroker
from adapters.embedded.valkey import EmbeddedRedis
from tests.smtp_sink import SmtpSink


@pytest.fixture(scope="session")
def embedded_root() -> Iterator[Path]:
    """Session directory holding the embedded servers' data and logs.

    Not under pytest's numbered tmp dirs: pytest prunes old ones when another session
    starts, which would pull the data directory from under a running server.
    """
    root = Path(tempfile.mkdtemp(prefix="eddy-test-servers-"))
    root.chmod(0o755)  # the embedded Postgres runs as its own system user
    yield root
    shutil.rmtree(root, ignore_errors=True)


Server = TypeVar("Server", bound=LoopbackServer)


def _serving(server: Server) -> Iterator[Server]:
    """A fixture's body: `server` started, and stopped afterwards."""
    try:
        server.start()
        yield server
    finally:
        # Also after a failed start: it may have left a half-started server behind.
        server.stop()


@pytest.fixture(scope="session")
def postgres(embedded_root: Path) -> Iterator[EmbeddedPostgres]:
    yield from _serving(EmbeddedPostgres(embedded_root / "postgres"))


@pytest.fixture
def fresh_database(postgres: EmbeddedPostgres) -> Callable[..., str]:
    """`make(name_prefix="t") -> name`: create a new, empty, uniquely named database.

    Databases are not dropped; the whole cluster is thrown away with the session tmp dir.
    """

    def make(name_prefix: str = "t") -> str:
        name = f"{name_prefix}_{uuid.uuid4().hex[:12]}"
        postgres.create_database(name)
        return name

    return make


@pytest.fixture(scope="session")
def redis_server(embedded_root: Path) -> Iterator[EmbeddedRedis]:
    yield from _serving(EmbeddedRedis(embedded_root / "valkey"))


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def kafka_broker(embedded_root: Path) -> Iterator[TansuBroker]:
    # Memory storage: topics live only as long as this session's broker.
    yield from _serving(TansuBroker(log_path=embedded_root / "tansu.log"))


@pytest.fixture
def own_postgres(embedded_root: Path) -> Iterator[EmbeddedPostgres]:
    """A Postgres of the test's own, which it may stop, kill and start again."""
    yield from _serving(EmbeddedPostgres(embedded_root / f"pg-{uuid.uuid4().hex[:6]}"))


@pytest.fixture
def own_redis(embedded_root: Path) -> Iterator[EmbeddedRedis]:
    """A Valkey of the test's own, which it may stop, kill and start again."""
    yield from _serving(EmbeddedRedis(embedded_root / f"valkey-{uuid.uuid4().hex[:6]}"))


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: TansuBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's real S3 HTTP server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    from adapters.embedded.ports import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """An SMTP server on a free loopback port keeping the mails it receives (`.messages`,
    `await .wait_for(n)`); `**smtp_sink.settings()` points a node's mail at it. See
    tests/smtp_sink.py."""
    sink = SmtpSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
