"""`eddy projections …` against real Postgres, run in-process as an operator would, with a
node (gateway and workers) running on the same database."""

from __future__ import annotations

import asyncio

from config import Settings
from tests.harness import eventually, running_node
from tests.integration.test_cli_operations import eddy, json_lines


async def test_projections_list_rebuild_switch_rollback_drop(settings: Settings) -> None:
    async with running_node(settings) as node:
        auth = await node.setup_and_login()

        code, out, err = await eddy("projections", "list", "--json")
        assert code == 0, err
        assert [(v["schema"], v["layout"], v["state"], v["active"]) for v in json_lines(out)
                if v["projection"] == "console"] == [("console_v1", 1, "live", True)]
        code, out, _ = await eddy("projections", "status")
        assert "console_v1" in out and "rebuild console to use it" in out
        # each projection's layouts are its own tables': statistics_v1 has its newest
        assert "statistics_v1" in out
        assert not [line for line in out.splitlines() if "rebuild" in line and "statistics" in line]

        # Refusals: nothing to switch to or roll back to, the active version stays.
        assert (await eddy("projections", "switch", "console", "7"))[0] == 1
        code, _, err = await eddy("projections", "drop", "console", "console_v1")
        assert code == 2 and "active" in err
        code, _, err = await eddy("projections", "rollback", "console")
        assert code == 2 and "no earlier" in err
        assert (await eddy("projections", "switch", "console", "v2"))[0] == 2

        code, out, err = await eddy("projections", "rebuild", "console", "--switch")
        assert code == 0, err
        assert "console_v2 (layout 2) is live" in out and "reads now use console_v2" in out
        assert "/s" in err and "ETA" in err  # the progress line
        await eventually(lambda: asyncio.sleep(
            0, node.container.read_models.active().schema == "console_v2"), timeout=5)
        code, out, _ = await eddy("projections", "status", "--json")
        status = {v["schema"]: v for v in json_lines(out) if v["projection"] == "console"}
        assert status["console_v2"]["active"] and not status["console_v1"]["active"]
        assert {v["state"] for v in status.values()} == {"live"}

        created = await node.client.post("/console/api/apps", headers=auth,
                                         json={"name": "during v2", "mode": "chat"})
        assert created.status_code == 201, created.text

        code, out, err = await eddy("projections", "rollback", "console")
        assert code == 0 and "console_v1" in out, err
        await eventually(lambda: asyncio.sleep(
            0, node.container.read_models.active().schema == "console_v1"), timeout=5)
        listed = await node.client.get("/console/api/apps?page=1&limit=10", headers=auth)
        assert "during v2" in [a["name"] for a in listed.json()["data"]]  # kept up to date

        code, out, err = await eddy("projections", "drop", "console", "2")
        assert code == 0 and "dropped console_v2" in out, err
        code, out, _ = await eddy("projections", "list", "--json")
        assert [v["schema"] for v in json_lines(out) if v["projection"] == "console"] \
            == ["console_v1"]
