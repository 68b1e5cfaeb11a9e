"""`GET /status` in a real headless Chromium against a node served over HTTP: what an
operator sees after signing in (dependencies, relay, projection versions, consumer groups
with their members, dead letters), and the sign-in form without a console login. The
screenshot is kept in the test artefacts (EDDY_TEST_ARTIFACTS, default ./test-artifacts)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from adapters.embedded.ports import free_port
from adapters.embedded.postgres import EmbeddedPostgres
from bootstrap import in_process_node
from schemas.topics import dead_letter_topic
from tests.harness import eventually, migrate, node_settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EDDY_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's `chromium`; installed here when missing, if we may (root with apt-get)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("needs headless Chromium: install the Debian package `chromium` "
                    "(this test installs it itself only when run as root with apt-get)")
    return found


@asynccontextmanager
async def served_node(settings: object) -> AsyncIterator[tuple[str, object]]:
    """The gateway and every worker role in this process, the gateway on a loopback port."""
    await asyncio.to_thread(migrate, settings)  # type: ignore[arg-type]
    async with in_process_node(settings, member="status-1") as (container,  # type: ignore[arg-type]
                                                                 app):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_config=None, access_log=False))
        task = asyncio.create_task(server.serve())

        async def started() -> bool:
            return server.started

        await eventually(started, timeout=30, interval=0.05)
        try:
            yield f"http://127.0.0.1:{port}", container
        finally:
            server.should_exit = True
            await task


async def browse(chromium: str, url: str, *extra: str) -> str:
    """What Chromium renders at `url` once its scripts ran (the DOM, or '' for a screenshot)."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--virtual-time-budget=8000",
               "--window-size=1280,1400", *extra, url]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text_of(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


async def test_status_page_in_a_real_browser(
        chromium: str, postgres: EmbeddedPostgres, fresh_database: Callable[..., str],
        redis_url: str) -> None:
    settings = node_settings(postgres, fresh_database("status"), redis_url)
    async with served_node(settings) as (base, container), httpx.AsyncClient(
            base_url=base, timeout=30) as client:
        assert (await client.post("/console/api/setup", json={
            "email": "owner@example.com", "name": "Owner",
            "password": "passw0rd1"})).status_code == 201
        token = (await client.post("/console/api/login", json={
            "email": "owner@example.com", "password": "passw0rd1"})).json()["data"][
            "access_token"]
        # one dead letter waiting on the cleanup topic
        await container.bus.publish(dead_letter_topic("cleanup"), str(uuid.uuid4()), b"{}",
                                    {"dlq_error": "RuntimeError('boom')"})

        # without a console login: nothing but the sign-in form; the data needs a token
        denied = await client.get("/status.json")
        assert denied.status_code == 401 and denied.json()["code"] == "unauthorized"
        assert (await client.get("/status/panel")).status_code == 401
        dom = await browse(chromium, f"{base}/status", "--dump-dom")
        assert re.search(r'<form id="login"(?![^>]*hidden)', dom)
        assert 'id="overall"' not in dom
        dom = await browse(chromium, f"{base}/status#token=not-a-token", "--dump-dom")
        assert "Your session ended" in dom and 'id="overall"' not in dom

        # signed in (the console's access token): everything at a glance
        data = (await client.get("/status.json",
                                 headers={"Authorization": f"Bearer {token}"})).json()
        assert data["status"] == "ok"
        dom = await browse(chromium, f"{base}/status#token={token}", "--dump-dom")
        shown = text_of(dom)
        assert 'data-status="ok"' in dom and "all systems ok" in shown
        assert re.search(r'<form id="login"[^>]*hidden', dom)
        for dependency in ("database", "redis", "bus", "projections", "relay"):
            assert re.search(rf"{dependency} ok", shown), dependency
        position = data["relay"]["position"]
        assert position > 0 and f"position {position:,} of" in shown
        assert re.search(r"console console_v1 live reads \d", shown)
        assert re.search(r"statistics statistics_v1 live reads \d", shown)
        for group in ("commands", "projection.console", "projection.statistics",
                      "indexing.priority", "cleanup"):
            assert f"{group} " in shown, group
        assert shown.count("status-1") >= 4  # the node's member in each of its groups
        assert "events.platform:0" in shown  # a member's partitions
        assert "1 waiting" in shown and re.search(r"cleanup 1\b", shown)

        screenshot = await asyncio.to_thread(fresh_artifact, "status_page.png")
        await browse(chromium, f"{base}/status#token={token}",
                     f"--screenshot={screenshot}")
        assert await asyncio.to_thread(lambda: screenshot.stat().st_size) > 10_000


def fresh_artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    return path
