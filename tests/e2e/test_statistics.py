"""App monitoring over HTTP: chats, completions, feedback and workflow runs through the
Service API, then every console statistics route (Dify's paths) answers Dify's figures, shapes
and rounding for them, in the asking account's days: the owner's (UTC) and a member's
(Asia/Kolkata). Routes of other app modes answer Dify's app_not_found; a bad `start`/`end`
answers 400 in Dify's error shape."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tests.chat import Chat, app_with_key
from tests.console_roles import join_as
from tests.fakes.openai_server import ScriptedChat
from tests.harness import eventually
from tests.workflows import edge, end_outputs, graph, graph_node, publish_in_console, text_input

MEMBER_ZONE = "Asia/Kolkata"
FLOW = graph([graph_node("start", "start", "Start", variables=[text_input("topic")]),
              graph_node("write", "llm", "Write", model={
                  "provider": "openai_api_compatible", "name": "qwen2.5", "mode": "chat",
                  "completion_params": {}}, prompt_template=[
                  {"role": "user", "text": "Write about {{#start.topic#}}."}],
                  context={"enabled": False}),
              graph_node("end", "end", "End", outputs=end_outputs(("text", ["write", "text"])))],
             [edge("start", "write"), edge("write", "end")])


def _days(rows: Iterable[dict[str, Any]], zone: str) -> dict[date, list[dict[str, Any]]]:
    """Rows by the day their `created_at` falls on in `zone`."""
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_day[datetime.fromtimestamp(row["created_at"], ZoneInfo(zone)).date()].append(row)
    return dict(sorted(by_day.items()))


def _per_day(rows: Iterable[dict[str, Any]], zone: str,
             figure: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"date": str(day), **figure(same)} for day, same in _days(rows, zone).items()]


async def test_every_statistics_route_answers_difys_figures(chat: Chat) -> None:
    n, provider = chat.node, chat.provider
    member = await join_as(n, chat.auth, "kiran@example.com", "editor", MEMBER_ZONE)
    await chat.configure(pre_prompt="Be brief.")
    provider.script_chat(*[ScriptedChat(f"Answer {i}.", usage={
        "prompt_tokens": 10 + i, "completion_tokens": 3 + i, "total_tokens": 13 + 2 * i})
        for i in range(5)])
    messages: list[dict[str, Any]] = []
    for query, user, conversation in (("Hi", "ann", None), ("And then?", "ann", 0),
                                      ("Hello", "bob", None)):
        body = {"user": user, **({"conversation_id": messages[conversation]["conversation_id"]}
                                 if conversation is not None else {})}
        answered = await chat.send(query, **body)
        assert answered.status_code == 200, answered.text
        messages.append({**answered.json(), "user": user})
    for message, rating in zip(messages, ("like", "dislike"), strict=False):
        rated = await n.client.post(f"/v1/messages/{message['message_id']}/feedbacks",
                                    headers=chat.key, json={"rating": rating,
                                                            "user": message["user"]})
        assert rated.status_code == 200, rated.text

    completion_app, completion_key = await app_with_key(n, chat.auth, "completion", "Writer")
    await Chat(n, chat.auth, completion_app, completion_key, provider).configure(
        pre_prompt="Write a line.")
    completions = []
    for _ in range(2):
        written = await n.client.post("/v1/completion-messages", headers=completion_key, json={
            "inputs": {}, "user": "cy", "response_mode": "blocking"})
        assert written.status_code == 200, written.text
        completions.append(written.json())

    flow_app, flow_key = await app_with_key(n, chat.auth, "workflow", "Flow")
    await publish_in_console(n, chat.auth, flow_app, FLOW)
    provider.script_chat(*[ScriptedChat("Tea is good.", usage={
        "prompt_tokens": 20, "completion_tokens": 4 + i, "total_tokens": 24 + i})
        for i in range(3)])
    runs = []
    for user in ("ann", "ann", "bob"):
        ran = await n.client.post("/v1/workflows/run", headers=flow_key, json={
            "inputs": {"topic": "tea"}, "user": user, "response_mode": "blocking"})
        assert ran.status_code == 200 and ran.json()["data"]["status"] == "succeeded", ran.text
        runs.append({**ran.json()["data"], "user": user})
    assert all(r["total_tokens"] > 0 for r in runs)

    async def get(app_id: str, figure: str, auth: dict[str, str],
                  **params: str) -> tuple[int, Any]:
        answer = await n.client.get(f"/console/api/apps/{app_id}/{figure}", headers=auth,
                                    params=params)
        return answer.status_code, answer.json()

    def usage(rows: list[dict[str, Any]], name: str) -> Any:
        return [r["metadata"]["usage"][name] for r in rows]

    def interactions(total: int, count: int) -> float:
        return float((Decimal(total) / Decimal(count)).quantize(Decimal("0.01")))

    # (the asking account's timezone, app, route) -> Dify's answer
    expected: dict[tuple[str, str, str], dict[str, Any]] = {}
    for zone in ("UTC", MEMBER_ZONE):
        answers = {
            (chat.app_id, "daily-messages"): _per_day(
                messages, zone, lambda ms: {"message_count": len(ms)}),
            (chat.app_id, "daily-conversations"): _per_day(
                messages, zone, lambda ms: {"conversation_count": len(
                    {m["conversation_id"] for m in ms})}),
            (chat.app_id, "daily-end-users"): _per_day(
                messages, zone, lambda ms: {"terminal_count": len({m["user"] for m in ms})}),
            (chat.app_id, "token-costs"): _per_day(messages, zone, lambda ms: {
                "token_count": sum(usage(ms, "prompt_tokens") + usage(ms, "completion_tokens")),
                "total_price": "0E-7", "currency": "USD"}),
            (chat.app_id, "user-satisfaction-rate"): _per_day(messages, zone, lambda ms: {
                "rate": round(sum(m is messages[0] for m in ms) * 1000 / len(ms), 2)}),
            (chat.app_id, "tokens-per-second"): _per_day(messages, zone, lambda ms: {
                "tps": round(sum(usage(ms, "completion_tokens"))
                             / sum(usage(ms, "latency")), 4)}),
            (completion_app, "average-response-time"): _per_day(completions, zone, lambda ms: {
                "latency": round(sum(usage(ms, "latency")) / len(ms) * 1000, 4)}),
        }
        # conversations by the day they started: ann's two messages, bob's one
        firsts = [messages[0], messages[2]]
        answers[(chat.app_id, "average-session-interactions")] = _per_day(
            firsts, zone, lambda cs: {"interactions": interactions(
                sum(sum(m["conversation_id"] == c["conversation_id"] for m in messages)
                    for c in cs), len(cs))})
        for (app_id, figure), data in answers.items():
            expected[(zone, app_id, f"statistics/{figure}")] = {"data": data}
        flows = {
            "daily-conversations": lambda rs: {"runs": len(rs)},
            "daily-terminals": lambda rs: {"terminal_count": len({r["user"] for r in rs})},
            "token-costs": lambda rs: {"token_count": sum(r["total_tokens"] for r in rs)},
            "average-app-interactions": lambda rs: {
                "interactions": interactions(len(rs), len({r["user"] for r in rs}))},
        }
        for figure, of_day in flows.items():
            expected[(zone, flow_app, f"workflow/statistics/{figure}")] = {
                "data": _per_day(runs, zone, of_day)}

    async def answered() -> dict[tuple[str, str, str], tuple[int, Any]]:
        auth = {"UTC": chat.auth, MEMBER_ZONE: member}
        return {key: await get(key[1], key[2], auth[key[0]]) for key in expected}

    # the statistics projection applies the events on its own, after the answers
    wrong: dict[tuple[str, str, str], tuple[int, Any]] = {}

    async def caught_up() -> bool:
        wrong.clear()
        wrong.update({key: answer for key, answer in (await answered()).items()
                      if answer != (200, expected[key])})
        return not wrong
    with contextlib.suppress(AssertionError):  # the figures still wrong say more
        await eventually(caught_up, timeout=30, interval=0.3)
    assert not wrong, {key: {"answered": wrong[key], "expected": expected[key]} for key in wrong}

    # a range: the minute after the last message holds none; one ending there holds all
    last = datetime.fromtimestamp(max(m["created_at"] for m in messages), UTC)
    after = (last + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")
    assert await get(chat.app_id, "statistics/daily-messages", chat.auth,
                     start=after) == (200, {"data": []})
    assert await get(chat.app_id, "statistics/daily-messages", chat.auth, start="", end=after,
                     ) == (200, {"data": _per_day(messages, "UTC",
                                                  lambda ms: {"message_count": len(ms)})})

    # another mode's route: Dify's get_app_model refuses it
    for app_id, figure, modes in (
            (chat.app_id, "statistics/average-response-time", "{'completion'}"),
            (completion_app, "statistics/average-session-interactions",
             "{'chat', 'agent-chat', 'advanced-chat'}"),
            (chat.app_id, "workflow/statistics/average-app-interactions", "{'workflow'}")):
        assert await get(app_id, figure, chat.auth) == (404, {
            "code": "app_not_found", "status": 404,
            "message": f"App mode is not in the supported list: {modes}"})

    # a bad range: Dify's 400, whatever the route
    for params, message in (
            ({"start": "2026-13-01 00:00"}, "Invalid start time format: time data "
             "'2026-13-01 00:00' does not match format '%Y-%m-%d %H:%M'"),
            ({"end": "yesterday"}, "Invalid end time format: time data 'yesterday' does not "
             "match format '%Y-%m-%d %H:%M'"),
            ({"start": "2026-03-02 10:00", "end": "2026-03-01 10:00"},
             "start must be earlier than or equal to end")):
        for app_id, figure in ((chat.app_id, "statistics/token-costs"),
                               (flow_app, "workflow/statistics/daily-terminals")):
            assert await get(app_id, figure, chat.auth, **params) == (400, {
                "code": "bad_request", "status": 400, "message": message}), (figure, params)

    # a deleted conversation's messages leave every figure, as Dify deletes them with it
    bobs = messages[2]
    deleted = await n.client.request("DELETE", f"/v1/conversations/{bobs['conversation_id']}",
                                     headers=chat.key, json={"user": "bob"})
    assert deleted.status_code == 204, deleted.text
    left = messages[:2]

    async def without_bobs() -> bool:
        return await get(chat.app_id, "statistics/daily-end-users", chat.auth) == (
            200, {"data": _per_day(left, "UTC", lambda ms: {"terminal_count": 1})})
    await eventually(without_bobs, timeout=30, interval=0.3)
    assert await get(chat.app_id, "statistics/daily-messages", chat.auth) == (
        200, {"data": _per_day(left, "UTC", lambda ms: {"message_count": len(ms)})})
    assert await get(chat.app_id, "statistics/average-session-interactions", chat.auth) == (
        200, {"data": _per_day(left[:1], "UTC", lambda cs: {"interactions": 2.0})})
