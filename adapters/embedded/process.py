"""What the embedded servers (postgres, valkey, tansu) share: an address on loopback that
start() fills in, use as a context manager, starting on a remembered port, and reading what
a server wrote while it failed to start."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Self

from adapters.embedded.ports import LOOPBACK, PortInUseError, free_port, remembered_port

START_ATTEMPTS = 3
# Enough of a failed start's output to say why, short enough for an exception message.
_OUTPUT_TAIL = 4000


class LoopbackServer(ABC):
    """A server process on `host:port`; the port is known once start() has run."""

    def __init__(self, port: int | None, host: str, *, timeout: float) -> None:
        self._requested_port = port
        self._host = host
        self._port: int | None = None
        self._timeout = timeout

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} has no port yet: call start() first")
        return self._port

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class DataDirServer(LoopbackServer):
    """A LoopbackServer that keeps its data, and its log file `log_name`, in `data_dir`."""

    log_name: ClassVar[str]
    default_timeout: ClassVar[float]

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = LOOPBACK,
        *,
        timeout: float | None = None,
    ) -> None:
        super().__init__(port, host, timeout=self.default_timeout if timeout is None else timeout)
        self._data_dir = Path(data_dir).absolute()

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self._data_dir / self.log_name


def launch_on_remembered_port(
    port_file: Path, requested: int | None, host: str, launch: Callable[[int], None]
) -> int:
    """Run `launch(port)` on the port `remembered_port` picks, and return that port.

    A port we picked ourselves can be taken between our check and the server binding it:
    then another free one is remembered and tried. A requested port is never swapped.
    """
    for attempt in range(START_ATTEMPTS):
        port = remembered_port(port_file, requested, host)
        try:
            launch(port)
            return port
        except PortInUseError:
            if requested is not None or attempt == START_ATTEMPTS - 1:
                raise
            port_file.write_text(f"{free_port(host)}\n")
    raise AssertionError("unreachable")


def spawn(
    cmd: list[str],
    output: IO[bytes],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server with its output in `output`.

    Own session: a Ctrl-C aimed at the caller must not kill the server mid-write.
    """
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )


def end_child(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL our child process if it still runs, and reap it."""
    if process is None or process.poll() is not None:
        return
    process.kill()
    process.wait()


def output_since(file: IO[bytes], offset: int) -> str:
    """The tail of what was written to `file` after `offset`."""
    file.seek(offset)
    return file.read()[-_OUTPUT_TAIL:].decode(errors="replace")


def log_since(path: Path, offset: int) -> str:
    """The tail of the log file at `path` after `offset` ("" if it cannot be read)."""
    try:
        with path.open("rb") as f:
            return output_since(f, offset)
    except OSError:
        return ""
