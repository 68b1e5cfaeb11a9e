"""`eddy up` keeps its embedded servers alive: Valkey, then Postgres, SIGKILLed under a
running system come back on the same data dir and port; while one is down requests answer
503 (never 500, never hang), and within seconds the api and worker have reconnected by
themselves. SIGTERM then stops everything, with no restart on the way out."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from adapters.embedded.ports import free_port
from adapters.embedded.postgres import EmbeddedPostgres
from adapters.embedded.valkey import EmbeddedRedis
from config import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
# No request may take longer, outage or not: a command accepted while Postgres is down
# answers 202 after COMMAND_TIMEOUT_SECONDS (10).
CALL_LIMIT = 11.0
HEAL_WITHIN = 30.0


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    data: Path
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def valkey_pid(self) -> int:
        pid = int((self.data / "redis" / "valkey.pid").read_text())
        # Only a server this test's `eddy up` started: Valkey is its child.
        assert pid in {c.pid for c in psutil.Process(self.proc.pid).children()}
        return pid

    def postmaster_pid(self) -> int:
        pgdata = self.data / "postgres"
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        # pg_ctl daemonizes the postmaster, so it is no descendant: check it serves our dir.
        assert str(pgdata) in psutil.Process(pid).cmdline(), pid
        return pid


@pytest.fixture
def eddy_up(embedded_root: Path) -> Iterator[Up]:
    data = embedded_root / f"up-{uuid.uuid4().hex[:6]}"
    port = free_port()
    # Nothing from the caller's environment may point it at other servers.
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.update(EDDY_DATA_DIR=str(data), DIFY_PORT=str(port), DIFY_BIND_ADDRESS="127.0.0.1")
    log = embedded_root / f"{data.name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", "up"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Up(proc, data, f"http://127.0.0.1:{port}", log)
    finally:
        if proc.poll() is None:  # the test failed before stopping it
            family = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for member in family:
                with contextlib.suppress(psutil.Error):
                    member.kill()
        # A killed `eddy up` leaves its servers running: stop the ones in our data dir.
        EmbeddedRedis(data / "redis").stop()
        EmbeddedPostgres(data / "postgres").stop()


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    took = time.monotonic() - started
    assert took < CALL_LIMIT, f"{method} {path} took {took:.1f}s"
    return response


def _until(check: Callable[[], T], timeout: float, what: str, up: Up) -> T:
    """Poll `check` until it returns something truthy; fail early if `eddy up` exits."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert up.proc.poll() is None, f"eddy up exited\n{up.output()}"
        assert time.monotonic() < deadline, f"{what} not within {timeout:.0f}s\n{up.output()}"
        time.sleep(0.2)
    return result


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False  # the api is still starting


def _answered(r: httpx.Response, ok: tuple[int, ...], seen: list[int]) -> None:
    """`r` succeeded, or was refused as Dify's clients expect while a dependency is down."""
    seen.append(r.status_code)
    if r.status_code == 503:
        assert r.json()["code"] == "service_unavailable", r.text
        assert r.headers["Retry-After"]
    else:
        assert r.status_code in ok, (r.request.method, r.request.url, r.status_code, r.text)


def _ride_out(client: httpx.Client, auth: dict[str, str], up: Up, seen: list[int]) -> None:
    """Read until /health is 200 again, recording the statuses in `seen`."""

    def healed() -> bool:
        health = _call(client, "GET", "/health")
        assert health.status_code in (200, 503), health.text
        seen.append(health.status_code)
        _answered(_call(client, "GET", "/console/api/apps", headers=auth), (200,), seen)
        return health.status_code == 200

    _until(healed, HEAL_WITHIN, "/health 200", up)


def _create_app(client: httpx.Client, auth: dict[str, str], name: str) -> str | None:
    """The new app's id once created (201); until the worker has reconnected a command
    may also time out pending (202) or be refused (503)."""
    r = _call(client, "POST", "/console/api/apps", headers=auth,
              json={"name": name, "mode": "chat"})
    assert r.status_code in (201, 202, 503), (r.status_code, r.text)
    return str(r.json()["id"]) if r.status_code == 201 else None


def _app_names(client: httpx.Client, auth: dict[str, str]) -> list[str]:
    r = _call(client, "GET", "/console/api/apps?limit=100", headers=auth)
    assert r.status_code == 200, r.text
    return [a["name"] for a in r.json()["data"]]


def _kill_and_heal(client: httpx.Client, auth: dict[str, str], up: Up, server: str,
                   pid_of: Callable[[], int]) -> None:
    killed = pid_of()
    os.kill(killed, signal.SIGKILL)
    started = time.monotonic()
    health = _call(client, "GET", "/health")
    # down: seen and reported, unless `eddy up` had it back within the check's reconnect
    # retries (Redis commands retry a dead connection on a fresh one for ~0.4 s)
    assert health.status_code == 503 or pid_of() != killed, health.text
    seen = [health.status_code]
    # A write while it is down: refused, or accepted (202: pending until the worker gets
    # through); never 500.
    _answered(_call(client, "POST", "/console/api/apps", headers=auth,
                    json={"name": f"during {server}", "mode": "chat"}), (201, 202), seen)
    _ride_out(client, auth, up, seen)
    assert pid_of() != killed
    name = f"after {server}"
    _until(lambda: _create_app(client, auth, name),
           HEAL_WITHIN - (time.monotonic() - started), f"201 after {server}", up)
    assert name in _app_names(client, auth)  # read-your-writes
    if seen[1] in (201, 202):  # the write made during the outage takes effect, once
        _until(lambda: f"during {server}" in _app_names(client, auth), 10, "pending app", up)
        assert _app_names(client, auth).count(f"during {server}") == 1
    print(f"{server}: healed in {time.monotonic() - started:.1f}s, statuses {seen}")


def test_up_restarts_killed_valkey_and_postgres(eddy_up: Up) -> None:
    up = eddy_up
    with httpx.Client(base_url=up.url, timeout=CALL_LIMIT + 5) as client:
        _until(lambda: _healthy(client), 120, "first /health 200", up)  # includes initdb
        r = _call(client, "POST", "/console/api/setup", json={
            "email": "owner@example.com", "name": "Owner", "password": "passw0rd1"})
        assert r.status_code == 201, r.text
        r = _call(client, "POST", "/console/api/login",
                  json={"email": "owner@example.com", "password": "passw0rd1"})
        auth = {"Authorization": f"Bearer {r.json()['data']['access_token']}"}
        assert _create_app(client, auth, "before")

        _kill_and_heal(client, auth, up, "valkey", up.valkey_pid)
        _kill_and_heal(client, auth, up, "postgres", up.postmaster_pid)

    # An operator's terminal beside it: no DB_HOST / REDIS_HOST, the same data folder.
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env["EDDY_DATA_DIR"] = str(up.data)
    listed = subprocess.run([sys.executable, "-m", "cli", "events", "list", "--json",
                             "--type", "AppCreated"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert '"AppCreated"' in listed.stdout and listed.stdout.count("\n") >= 3, listed.stdout

    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=60) == 0, up.output()
    output = up.log.read_text(errors="replace")
    assert output.rstrip().endswith("Eddy stopped."), output[-6000:]
    assert output.count('"msg":"service restarted"') == 2, output[-6000:]  # none while stopping
    assert not EmbeddedRedis(up.data / "redis").is_running()
    assert not EmbeddedPostgres(up.data / "postgres").is_running()
    assert not (up.data / "servers.env").exists()  # nothing points at stopped servers
