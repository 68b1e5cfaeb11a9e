"""`GET /status`: the operators' page. One glance shows each dependency's health, the relay's
position, every projection version with its lag and its parked events (each with its error
and the way out), the consumer groups with their members, lag and throughput, and the dead
letters waiting.

The page itself is a static shell: it asks for a console access token (the console's login,
or `/status#token=<access token>`, kept in the tab's sessionStorage and never sent in a URL)
and then loads the server-rendered panel (`/status/panel`) every few seconds with it as a
bearer token. `/status.json` is the same data for scripts. Both need the console login of
the platform's operator, the account that set it up: the page shows every workspace's
parked events and dead letters, which no other workspace's member may see.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from html import escape
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import text

from adapters.bus.redis_streams import RedisStreamsBus
from events.consumer_groups import GroupsSampler
from gateway.auth import ConsoleUser, console_user
from gateway.deps import get_container
from gateway.health import dependency_checks
from gateway.metrics import dead_letters
from projections.platform.queries import setup_info
from projections.versions import status as projection_status
from schemas.errors import Forbidden

router = APIRouter(include_in_schema=False)

REFRESH_SECONDS = 5

_RELAY = text(
    "SELECT coalesce((SELECT position FROM relay_positions WHERE name = 'relay'), 0),"
    " coalesce((SELECT max(notification_id) FROM stored_events), 0)")


async def platform_operator(request: Request) -> ConsoleUser:
    """The account that set the platform up (Dify's self-hosted admin); any other is
    refused as Dify refuses a role it lacks."""
    user = await console_user(request)
    setup = await setup_info(get_container(request).engine)
    if setup is None or setup["account_id"] != user.account_id:
        raise Forbidden()
    return user


def _sampler(request: Request) -> GroupsSampler:
    """One per app, so each refresh measures throughput since the previous one."""
    state = request.app.state
    if not hasattr(state, "groups_sampler"):
        c = get_container(request)
        state.groups_sampler = GroupsSampler(c.engine, c.bus)
    return state.groups_sampler  # type: ignore[no-any-return]


async def _status(request: Request) -> dict[str, Any]:
    c = get_container(request)
    dependencies, versions, groups = await asyncio.gather(
        dependency_checks(request), projection_status(c.engine, c.projections.values()),
        _sampler(request).sample())
    async with c.engine.connect() as conn:
        position, end = (await conn.execute(_RELAY)).one()
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "ok" if all(d["status"] == "ok" for d in dependencies.values())
        else "degraded",
        "dependencies": dependencies,
        "relay": {"position": int(position), "log_end": int(end),
                  "lag": int(end) - int(position)},
        "projections": [{"projection": s.version.projection, "version": s.version.version,
                         "schema": s.version.schema, "state": s.version.state,
                         "active": s.version.active, "lag": s.lag_events,
                         "parked": len(s.parked), "waiting": s.waiting_events}
                        for s in versions],
        "parked_events": [p.as_json() for s in versions for p in s.parked],
        "groups": [g.as_json() for g in sorted(groups, key=lambda g: g.name)],
        # Redis Streams only: Kafka's dead-letter topics are read with Kafka tooling
        "dead_letters": (await dead_letters(c.bus)
                         if isinstance(c.bus, RedisStreamsBus) else None),
    }


@router.get("/status.json")
async def status_json(request: Request,
                      user: ConsoleUser = Depends(platform_operator)) -> JSONResponse:
    return JSONResponse(await _status(request))


@router.get("/status/panel")
async def status_panel(request: Request,
                       user: ConsoleUser = Depends(platform_operator)) -> HTMLResponse:
    return HTMLResponse(render_panel(await _status(request)))


@router.get("/status")
async def status_page() -> HTMLResponse:
    return HTMLResponse(_PAGE.replace("{refresh_ms}", str(REFRESH_SECONDS * 1000)))


def _badge(ok: bool, text_ok: str = "ok", text_bad: str | None = None) -> str:
    label = text_ok if ok else (text_bad or "error")
    return f'<span class="badge {"ok" if ok else "bad"}">{escape(label)}</span>'


def _lag(value: int | None) -> str:
    if value is None:
        return '<span class="muted">building</span>'
    return f'<span class="num {"ok" if value == 0 else "warn"}">{value:,}</span>'


def _parked(parked: int, waiting: int) -> str:
    if not parked:
        return '<span class="num ok">0</span>'
    return f'<span class="num bad">{parked:,}</span> <span class="muted">({waiting:,})</span>'


def _age(seconds: float | None) -> str:
    if seconds is None:
        return '<span class="muted">none</span>'
    return f"{seconds:,.1f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"


def _detail(check: dict[str, Any]) -> str:
    """A dependency's error, or its lag (one number, or one per projection version)."""
    if "error" in check:
        return str(check["error"])
    if "reason" in check:
        return str(check["reason"])
    lag = check.get("lag")
    if isinstance(lag, dict):
        return "lag " + ", ".join(f"{name}: {events:,}" for name, events in lag.items())
    return "" if lag is None else f"lag {lag:,}"


def _group_row(g: dict[str, Any]) -> str:
    rate = "-" if g["throughput"] is None else f"{g['throughput']:,.1f}"
    members = "".join(
        f'<div><b>{escape(m)}</b> <span class="muted">'
        f"{escape(', '.join(parts)) or '(no partitions)'}</span></div>"
        for m, parts in g["members"].items()) or '<span class="bad-text">no members</span>'
    return (f"<tr><td>{escape(g['group'])}</td><td>{_lag(g['lag'])}</td>"
            f'<td class="num">{rate}</td><td>{_age(g["oldest_unacked_age_seconds"])}</td>'
            f"<td>{members}</td></tr>")


def render_panel(s: dict[str, Any]) -> str:
    """The status data as HTML (escaped throughout)."""
    deps = "".join(
        f"<tr><td>{escape(name)}</td><td>{_badge(d['status'] == 'ok', 'ok', d['status'])}"
        f'</td><td class="muted">{escape(_detail(d))}</td></tr>'
        for name, d in s["dependencies"].items())
    relay = s["relay"]
    projections = "".join(
        f"<tr><td>{escape(p['projection'])}</td><td>{escape(p['schema'])}</td>"
        f"<td>{escape(p['state'])}</td><td>{'reads' if p['active'] else ''}</td>"
        f"<td>{_lag(p['lag'])}</td><td>{_parked(p['parked'], p['waiting'])}</td></tr>"
        for p in s["projections"])
    parked = "".join(
        f"<tr><td>{escape(p['version'])}</td><td>{escape(p['aggregate_type'])} "
        f"{escape(p['aggregate_id'])} v{p['aggregate_version']}</td>"
        f"<td>{escape(p['event_type'])}</td><td class=\"num\">{p['position']:,}</td>"
        f'<td class="muted">{escape(p["error"][:300])}</td></tr>' for p in s["parked_events"])
    parked_section = "" if not parked else (
        '<section id="parked"><h2>Parked events</h2><p class="muted">Their apply failed for '
        "good; their aggregates wait. After a fix: <code>eddy dlq replay</code>; to skip: "
        "<code>eddy dlq drop … --reason</code>.</p><table><tr><th>version</th>"
        "<th>aggregate</th><th>event</th><th>position</th><th>error</th></tr>"
        f"{parked}</table></section>")
    groups = "".join(_group_row(g) for g in s["groups"])
    if s["dead_letters"] is None:
        dead = '<p class="muted">Kafka: read the .dlq topics with Kafka tooling.</p>'
    else:
        total = sum(s["dead_letters"].values())
        dead = (f"<p>{_badge(total == 0, 'none waiting', f'{total:,} waiting')}</p><table>"
                "<tr><th>topic</th><th>dead letters</th></tr>"
                + "".join(f"<tr><td>{escape(t)}</td><td class=\"num {'ok' if n == 0 else 'bad'}"
                          f"\">{n:,}</td></tr>" for t, n in sorted(s["dead_letters"].items()))
                + "</table>")
    return f"""
<div id="overall" data-status="{escape(s['status'])}">
  {_badge(s['status'] == 'ok', 'all systems ok', 'degraded')}
  <span class="muted">as of {escape(s['generated_at'])}</span>
</div>
<section id="dependencies"><h2>Dependencies</h2>
  <table><tr><th>dependency</th><th>health</th><th></th></tr>{deps}</table></section>
<section id="relay"><h2>Relay</h2>
  <p>position <b class="num">{relay['position']:,}</b> of <b class="num">
  {relay['log_end']:,}</b> events &middot; lag {_lag(relay['lag'])}</p></section>
<section id="projections"><h2>Projections</h2>
  <table><tr><th>projection</th><th>version</th><th>state</th><th></th><th>lag (events)</th>
  <th>parked (waiting)</th></tr>{projections}</table></section>
{parked_section}
<section id="groups"><h2>Consumer groups</h2>
  <table><tr><th>group</th><th>lag (events)</th><th>events/s</th><th>oldest unacked</th>
  <th>members and partitions</th></tr>{groups}</table></section>
<section id="dead-letters"><h2>Dead letters</h2>{dead}</section>
"""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Eddy status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2433; background: #f6f7f9; }
 h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 15px; margin: 0 0 8px; }
 section, #login { background: #fff; border: 1px solid #e1e4ea; border-radius: 8px;
   padding: 12px 16px; margin: 12px 0; }
 table { border-collapse: collapse; width: 100%; }
 th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f3;
   vertical-align: top; }
 th { font-weight: 600; color: #5a6478; font-size: 12px; text-transform: uppercase; }
 .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; }
 .badge.ok { background: #dff5e3; color: #17652b; }
 .badge.bad { background: #fde2e1; color: #a1231b; }
 .num { font-variant-numeric: tabular-nums; } .num.ok { color: #17652b; }
 .num.warn { color: #9a5b00; font-weight: 600; } .num.bad, .bad-text { color: #a1231b; }
 .muted { color: #7a8394; } #error { color: #a1231b; }
 #login input { margin: 4px 8px 4px 0; padding: 4px; }
</style></head>
<body>
<h1>Eddy status</h1>
<form id="login" hidden>
  <p>Sign in with a console account.</p>
  <input name="email" type="email" placeholder="email" required>
  <input name="password" type="password" placeholder="password" required>
  <button type="submit">Sign in</button> <span id="error"></span>
</form>
<main id="panel"></main>
<script>
const KEY = "eddy_console_token";
const form = document.getElementById("login");
const panel = document.getElementById("panel");
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) {
  sessionStorage.setItem(KEY, hash.get("token"));
  history.replaceState(null, "", location.pathname);
}
async function load() {
  const token = sessionStorage.getItem(KEY);
  if (!token) { form.hidden = false; return; }
  const r = await fetch("/status/panel", {headers: {Authorization: "Bearer " + token}});
  if (r.status === 401) {
    sessionStorage.removeItem(KEY);
    panel.innerHTML = "";
    form.hidden = false;
    document.getElementById("error").textContent = "Your session ended: sign in again.";
    return;
  }
  form.hidden = true;
  panel.innerHTML = r.ok ? await r.text()
    : '<p id="error">Status unavailable (' + r.status + "), retrying.</p>";
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {email: form.email.value, password: form.password.value};
  const r = await fetch("/console/api/login", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const answer = await r.json();
  if (!r.ok) { document.getElementById("error").textContent = answer.message; return; }
  sessionStorage.setItem(KEY, answer.data.access_token);
  document.getElementById("error").textContent = "";
  load();
});
load();
setInterval(load, {refresh_ms});
</script>
</body></html>
"""
