"""Dify's client SDKs as their users run them, unmodified, against a running Eddy.

dify-client-python imports as `dify_client`, like dify-client (installed in the venv), so it
lives in its own folder (`.venv/clients/dify-client-python`, installed by the README's test
command from requirements-clients.txt) and runs in a subprocess with that folder first on
PYTHONPATH: the script given prints one JSON document, which is returned."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson

# beside the running venv's packages (the README's test command installs it there)
DIFY_CLIENT_PYTHON = Path(sys.prefix) / "clients" / "dify-client-python"


async def run_dify_client_python(script: str, *, base_url: str, api_key: str,
                                 timeout: float = 120.0) -> Any:
    """Runs `script` (Python using `dify_client` 1.x; `BASE_URL` and `API_KEY` are defined,
    `emit(obj)` prints the result) and returns what it emitted."""
    prelude = textwrap.dedent(f"""
        import json, sys
        BASE_URL = {base_url!r}
        API_KEY = {api_key!r}
        def emit(obj):
            sys.stdout.write(json.dumps(obj, default=str))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(DIFY_CLIENT_PYTHON), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", prelude + textwrap.dedent(script), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode != 0:
        raise AssertionError(f"dify-client-python script failed:\n{err.decode()[-4000:]}")
    return orjson.loads(out)
