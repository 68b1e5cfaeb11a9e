"""Loopback port helpers shared by the embedded servers."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


class PortInUseError(RuntimeError):
    """The chosen port is already taken, so a server would fail or, worse, a readiness
    probe would succeed against someone else's server."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free right now on `host` (the kernel picks it).

    There is a small race until the server binds it; callers that pick a port this way
    should be ready to retry with another one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True if nothing listens on `port`.

    SO_REUSEADDR mirrors what the servers do, so a port that only has TIME_WAIT
    connections from a previous run still counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_port_file(path: Path) -> int | None:
    """The port stored in `path`, or None if the file is missing or garbled."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if 0 < value < 65536 else None


def ensure_port_free(port: int, host: str = LOOPBACK) -> None:
    if not port_is_free(port, host):
        raise PortInUseError(f"port {host}:{port} is already in use")


def remembered_port(path: Path, requested: int | None, host: str = LOOPBACK) -> int:
    """Pick the port for a server whose data lives next to `path`, and remember it.

    An explicit `requested` port always wins. Otherwise the port from the previous run is
    reused so clients configured against it keep working, unless someone else took it
    meanwhile, in which case a new free port is chosen.
    """
    port = requested
    if port is None:
        previous = read_port_file(path)
        port = previous if previous is not None and port_is_free(previous, host) else None
    if port is None:
        port = free_port(host)
    if read_port_file(path) != port:
        path.write_text(f"{port}\n")
    return port


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `ready` until it returns True.

    Raises TimeoutError after `timeout` seconds, or RuntimeError as soon as `alive`
    reports the server process died (so a crash does not cost the whole timeout).
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if ready():
                return
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: process exited during startup")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)
