"""The processes a benchmark starts, and the CPU seconds processes use.

Children run in their own session (Ctrl-C reaches only the benchmark script, which then
stops each child and whatever it started, by process group) and are stopped by PID, at
the latest when the script exits. CPU is measured per process tree: wall time alone cannot
tell a slow path from a busy (shared) machine; CPU seconds per component can."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from adapters.embedded.postgres import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent

# --- child processes: started here, stopped here, by PID ------------------------------------

_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn(args: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A Python child (`python args…`) in its own session, its output in `log_path`."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, *args], env=dict(env), cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _children[proc.pid] = proc
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM (graceful: uvicorn drains, workers leave their groups), then SIGKILL to
    whatever is left of the child's process group (a hung worker, pool children)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: process group id == its pid
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _children.pop(proc.pid, None)


@atexit.register
def stop_children() -> None:
    for proc in list(_children.values()):
        stop(proc, timeout=5)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def check_alive(proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}; log {log}:\n{tail(log)}")


def finish(root: Path, completed: bool) -> None:
    """The run's work dir goes when the run completed; otherwise its logs stay to be read."""
    if completed:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"logs kept in {root}", flush=True)


def postmaster_pid(pg: EmbeddedPostgres) -> int | None:
    try:
        return int((pg.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


# --- CPU seconds per process ----------------------------------------------------------------


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and its descendants, live or exited and reaped (Postgres
    backends of closed connections)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def this_process() -> float:
    """This script's CPU seconds (all its threads, not its children): the load generator,
    or whatever runs in it."""
    return time.process_time()



def reaped_cpu(pid: int) -> float:
    """CPU seconds of a process's exited children it reaped (and of what they reaped): a
    worker's sandboxed code and template runs, which tree_cpu counts as the worker's."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.children_user + t.children_system

CpuProbes = dict[str, Callable[[], float]]


class CpuMeter:
    """CPU seconds each probe's processes use from the meter's creation on."""

    def __init__(self, probes: CpuProbes) -> None:
        self.probes = probes
        self.start = {name: probe() for name, probe in probes.items()}

    def used(self) -> dict[str, float]:
        return {name: probe() - self.start[name] for name, probe in self.probes.items()}


IDLE_EDDY = "idle eddy"  # Eddy's processes (and its bus) while the baseline runs: not its cost


def format_cpu(cpu: Mapping[str, float], per: int, unit: str) -> str:
    """`a 1.2 + b 3.4 = 4.6 ms` per request (or event); IDLE_EDDY apart, outside the sum.
    psutil reads CPU time in clock ticks (10 ms): short runs round small shares to 0."""
    scale, digits = {"ms": (1e3, 1), "µs": (1e6, 0)}[unit]
    own = {name: seconds for name, seconds in cpu.items() if name != IDLE_EDDY}
    text = " + ".join(f"{name} {seconds / per * scale:.{digits}f}" for name, seconds in own.items())
    text += f" = {sum(own.values()) / per * scale:.{digits}f} {unit}"
    if IDLE_EDDY in cpu:
        text += f" (meanwhile {IDLE_EDDY} {cpu[IDLE_EDDY] / per * scale:.{digits}f})"
    return text
