"""`eddy events …` and `eddy dlq …` against real Postgres and Redis, run in-process as an
operator would (`cli.main([...])` with the node's settings in the environment)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

import cli
from adapters.bus.base import Message, TopicSpec
from adapters.bus.redis_streams import RedisStreamsBus
from config import Settings
from tests.harness import add_account_with_workspace, eventually, running_node
from workers.dead_letters import DeadLetterQueues
from workers.runtime import Processor, RetryPolicy, run_processor


async def eddy(*argv: str) -> tuple[int, str, str]:
    """Run `eddy argv…` in a thread (it runs its own event loop); exit code, stdout, stderr."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        root = logging.getLogger()
        handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main(list(argv))
        finally:  # the CLI configures logging for its process; give pytest its own back
            root.handlers[:], logging.root.level = handlers, level
            logging.setLogRecordFactory(factory)
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


async def test_events_list_show_filters_and_tail(settings: Settings) -> None:
    async with running_node(settings) as node:
        await node.setup_and_login()
        await add_account_with_workspace(node, "rival@example.com")

        code, out, err = await eddy("events", "list", "--json")
        assert code == 0, err
        events = json_lines(out)
        positions = [e["position"] for e in events]
        assert positions == sorted(positions) and len(events) >= 4
        tenants = {e["tenant_id"] for e in events} - {None}
        assert len(tenants) == 2

        # the human table: a header, then one line per event
        code, out, _ = await eddy("events", "list")
        lines = out.splitlines()
        assert code == 0 and lines[0].split()[:2] == ["POSITION", "OCCURRED_AT"]
        assert len(lines) == len(events) + 1
        first = events[0]
        assert (f"{first['aggregate_type']}:{first['aggregate_id']}"
                f"@{first['aggregate_version']}") in lines[1]

        # one tenant; one aggregate's history; one type; position windows; the latest N
        rival = next(e["tenant_id"] for e in events if e["type"] == "WorkspaceCreated"
                     and e["position"] == max(p["position"] for p in events
                                              if p["type"] == "WorkspaceCreated"))
        _, out, _ = await eddy("events", "list", "--tenant", rival, "--json")
        assert {e["tenant_id"] for e in json_lines(out)} == {rival}
        aggregate = events[0]["aggregate_id"]
        _, out, _ = await eddy("events", "list", "--aggregate", aggregate, "--json")
        history = json_lines(out)
        assert history == [e for e in events if e["aggregate_id"] == aggregate]
        assert [e["aggregate_version"] for e in history] == list(range(1, len(history) + 1))
        _, out, _ = await eddy("events", "list", "--type", "WorkspaceCreated", "--json")
        assert [e["type"] for e in json_lines(out)] == ["WorkspaceCreated"] * 2
        _, out, _ = await eddy("events", "list", "--type",
                               f"{events[0]['aggregate_type']}:{events[0]['type']}", "--json")
        assert events[0] in json_lines(out)
        _, out, _ = await eddy("events", "list", "--from-position", str(positions[1]),
                               "--limit", "2", "--json")
        assert [e["position"] for e in json_lines(out)] == positions[1:3]
        _, out, _ = await eddy("events", "list", "--to-position", str(positions[2]),
                               "--limit", "2", "--json")
        assert [e["position"] for e in json_lines(out)] == positions[1:3]
        _, out, _ = await eddy("events", "list", "--limit", "2", "--json")
        assert [e["position"] for e in json_lines(out)] == positions[-2:]
        _, out, _ = await eddy("events", "list", "--since", events[0]["occurred_at"],
                               "--until", "2999-01-01", "--json")
        assert json_lines(out) == events
        _, out, _ = await eddy("events", "list", "--until", "2000-01-01T00:00:00", "--json")
        assert json_lines(out) == []

        # show: by position (indented) and by event id (one JSON line), payload included
        code, out, _ = await eddy("events", "show", str(first["position"]))
        shown = orjson.loads(out)
        assert code == 0 and "\n  " in out
        assert shown["event_id"] == first["event_id"] and isinstance(shown["payload"], dict)
        assert {"correlation_id", "causation_id", "schema_version"} <= shown.keys()
        code, out, _ = await eddy("events", "show", first["event_id"], "--json")
        assert code == 0 and orjson.loads(out) == shown

        # tail: follows from a position (stops after --count for the test)
        code, out, _ = await eddy("events", "tail", "--from-position", str(positions[0]),
                                  "--count", "3", "--json")
        assert code == 0 and [e["position"] for e in json_lines(out)] == positions[:3]

        # bad input: a clear message and a non-zero exit
        code, _, err = await eddy("events", "show", "999999")
        assert code == 1 and "no event 999999" in err
        code, _, err = await eddy("events", "show", "not-an-id")
        assert code == 2 and "UUID" in err
        code, _, err = await eddy("events", "list", "--tenant", "nope")
        assert code == 2 and "--tenant must be a UUID" in err
        code, _, err = await eddy("events", "list", "--since", "yesterday")
        assert code == 2 and "ISO-8601" in err


TOPIC = "ops.test"


@contextlib.asynccontextmanager
async def flaky_processor(bus: RedisStreamsBus, broken: dict[str, bool],
                          handled: list[bytes]) -> AsyncIterator[None]:
    """A processor on a test topic that fails deterministically while `broken["now"]`."""

    async def handle(message: Message) -> None:
        if broken["now"]:
            raise RuntimeError(f"boom: cannot handle {message.key}")
        handled.append(message.value)

    await bus.ensure_topics([TopicSpec(TOPIC, 1), TopicSpec(f"{TOPIC}.dlq", 1)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_processor(
        bus, Processor(group="ops-test", topics=[TOPIC], handle=handle), "m1", stop,
        policy=RetryPolicy(max_attempts=2, base_backoff=0.01)))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def dead_letters() -> list[dict[str, Any]]:
    code, out, err = await eddy("dlq", "list", "--topic", TOPIC, "--json")
    assert code == 0, err
    return json_lines(out)


async def test_dlq_list_show_replay_and_drop(settings: Settings) -> None:
    async with running_node(settings, roles=[]) as node:
        bus = node.container.bus
        assert isinstance(bus, RedisStreamsBus)
        broken, handled = {"now": True}, []
        async with flaky_processor(bus, broken, handled):
            await bus.publish(TOPIC, "k1", b'{"n": 1}', {"correlation_id": "c-1"})
            [letter] = await eventually(dead_letters)
            assert letter["key"] == "k1" and letter["group"] == "ops-test"
            assert letter["attempts"] == 2 and "boom: cannot handle k1" in letter["error"]
            assert letter["source_topic"] == TOPIC
            assert letter["first_failed_at"] == letter["last_failed_at"]

            # listing consumed nothing: it is still there, also in the all-topics table
            code, out, _ = await eddy("dlq", "list")
            assert code == 0 and letter["id"] in out and "1 dead letter(s)" in out
            code, out, _ = await eddy("dlq", "list", "--group", "someone-else", "--json")
            assert code == 0 and out == ""

            code, out, _ = await eddy("dlq", "show", TOPIC, letter["id"])
            detail = json.loads(out)
            assert code == 0 and "RuntimeError: boom" in detail["traceback"]
            assert detail["value"] == {"n": 1} and detail["headers"] == {"correlation_id": "c-1"}

            # the cause is gone: replay gets it handled, and it leaves the DLQ
            broken["now"] = False
            code, out, err = await eddy("dlq", "replay", TOPIC, letter["id"])
            assert code == 0, err
            assert f"[1/1] {TOPIC}.dlq {letter['id']} replayed to {TOPIC}" in out
            await eventually(lambda: _async(handled == [b'{"n": 1}']))
            assert await dead_letters() == []

            # another failure, given up: drop needs a reason, and the drop is recorded
            broken["now"] = True
            await bus.publish(TOPIC, "k2", b'{"n": 2}')
            [second] = await eventually(dead_letters)
            code, _, err = await eddy("dlq", "drop", TOPIC, second["id"])
            assert code == 2 and "--reason" in err
            code, _, err = await eddy("dlq", "drop", TOPIC, second["id"], "--reason", "  ")
            assert code == 2
            assert [d["id"] for d in await dead_letters()] == [second["id"]]
            code, out, err = await eddy("dlq", "drop", TOPIC, second["id"],
                                        "--reason", "bad data from the legacy import")
            assert code == 0 and "dropped" in out, err
            assert await dead_letters() == []
            [record] = await DeadLetterQueues(bus).dropped(TOPIC)
            assert record.key == "k2" and record.value == b'{"n": 2}'
            assert record.headers["dropped_reason"] == "bad data from the legacy import"
            assert record.headers["dropped_id"] == second["id"]
            assert "boom" in record.headers["dlq_error"]

            # a replay that fails again is back in the DLQ, remembering its first failure
            await bus.publish(TOPIC, "k3", b'{"n": 3}')
            [third] = await eventually(dead_letters)
            code, _, _ = await eddy("dlq", "replay", TOPIC, "--all")
            assert code == 0
            [again] = await eventually(lambda: _refailed(third["id"]))
            assert again["replays"] == 1 and again["first_failed_at"] == third["last_failed_at"]
            assert again["last_failed_at"] >= again["first_failed_at"]

        # bad input
        code, _, err = await eddy("dlq", "show", TOPIC, "0:1-0")
        assert code == 1 and "no dead letter" in err
        code, _, err = await eddy("dlq", "show", TOPIC, "garbage")
        assert code == 1 and "malformed" in err
        code, _, err = await eddy("dlq", "list", "--topic", "no.such.topic")
        assert code == 1 and "unknown topic" in err
        code, _, err = await eddy("dlq", "replay", TOPIC)
        assert code == 2 and "--all" in err


async def _async(value: bool) -> bool:
    return value


async def _refailed(old_id: str) -> list[dict[str, Any]]:
    return [d for d in await dead_letters() if d["id"] != old_id]


async def test_eddy_job_runs_a_declared_job_once_and_names_them_all(settings: Settings) -> None:
    async with running_node(settings, roles=[]):
        code, _, err = await eddy("job", "trim_consumed_messages")
        assert code == 0, err
        code, _, err = await eddy("job", "send_newsletters")
        assert code == 2
        assert "unknown job 'send_newsletters'" in err and "advance_projection_watermarks" in err
