"""Trigger nodes (Dify's `trigger-schedule` and `trigger-webhook`): the roots a published
workflow's runs start from when a schedule ticks or a webhook is called, instead of a user
filling the start node's form.

Pure: a schedule node's cron (its cron mode, or the visual frequency config turned into one),
a webhook node's request rules, a webhook request turned into the run's inputs (or refused
before anything starts), the answer the caller gets, and what each trigger node outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from workflow_graph.cron import Cron, CronError
from workflow_graph.errors import GraphError, WorkflowGraphError

TRIGGER_SCHEDULE = "trigger-schedule"
TRIGGER_WEBHOOK = "trigger-webhook"
TRIGGER_NODE_TYPES = frozenset({TRIGGER_SCHEDULE, TRIGGER_WEBHOOK})
MAX_WEBHOOKS = 5  # webhook nodes per workflow (Dify's)

WEEKDAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
METHODS = frozenset({"get", "post", "head", "patch", "put", "delete"})
JSON, FORM_DATA, FORM_URLENCODED = ("application/json", "multipart/form-data",
                                    "application/x-www-form-urlencoded")
TEXT, BINARY = "text/plain", "application/octet-stream"
CONTENT_TYPES = frozenset({JSON, FORM_DATA, FORM_URLENCODED, TEXT, BINARY})
# Dify's webhook parameter types; form and query values arrive as text and are converted.
PARAMETER_TYPES = frozenset({"string", "number", "boolean", "object", "array[string]",
                             "array[number]", "array[boolean]", "array[object]", "file"})
_TRUTH = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


class TriggerConfigError(GraphError):
    """A trigger node's settings name no schedule or no webhook (refused when published)."""

    def __init__(self, node_id: str, problem: str) -> None:
        self.node_id = node_id
        super().__init__(f"node {node_id!r}: {problem}")


class WebhookRequestError(WorkflowGraphError):
    """A webhook call that does not fit its node (method, content type, a required or
    mistyped parameter, a body that does not parse): Dify's 400, no run started."""


# --- schedules ----------------------------------------------------------------------------


def schedule_of(node_id: str, data: Mapping[str, Any]) -> Cron:
    """The schedule of a `trigger-schedule` node: `mode` "cron" (its `cron_expression`) or
    "visual" (`frequency` hourly/daily/weekly/monthly with its `visual_config`), in its
    `timezone` (UTC by default)."""
    mode = data.get("mode", "visual")
    if mode == "cron":
        expression = data.get("cron_expression")
        if not isinstance(expression, str) or not expression.strip():
            raise TriggerConfigError(node_id, "Cron expression is required for cron mode")
    elif mode == "visual":
        expression = _visual_to_cron(node_id, str(data.get("frequency") or ""),
                                     data.get("visual_config") or {})
    else:
        raise TriggerConfigError(node_id, f"Invalid schedule mode: {mode}")
    try:
        return Cron(expression.strip(), str(data.get("timezone") or "UTC"))
    except CronError as error:
        raise TriggerConfigError(node_id, str(error)) from error


def _visual_to_cron(node_id: str, frequency: str, config: Mapping[str, Any]) -> str:
    if frequency == "hourly":
        minute = config.get("on_minute", 0)
        if not isinstance(minute, int) or not 0 <= minute <= 59:
            raise TriggerConfigError(node_id, "on_minute must be a minute of the hour (0-59)")
        return f"{minute} * * * *"
    if frequency not in {"daily", "weekly", "monthly"}:
        raise TriggerConfigError(node_id, f"Unsupported frequency: {frequency or None}")
    hour, minute = _hour_and_minute(node_id, str(config.get("time") or "12:00 AM"))
    if frequency == "daily":
        return f"{minute} {hour} * * *"
    if frequency == "weekly":
        days = config.get("weekdays") or []
        if not days or any(d not in WEEKDAYS for d in days):
            raise TriggerConfigError(node_id, "Weekdays are required for weekly schedules")
        return f"{minute} {hour} * * {','.join(sorted({str(WEEKDAYS[d]) for d in days}))}"
    days = config.get("monthly_days") or []
    numbers = sorted({d for d in days if isinstance(d, int) and 1 <= d <= 31})
    if not days or len(numbers) + days.count("last") != len(days):
        raise TriggerConfigError(node_id, "Monthly days are required for monthly schedules "
                                          "(1-31 or 'last')")
    month_days = [*map(str, numbers), *(["L"] if "last" in days else [])]
    return f"{minute} {hour} {','.join(month_days)} * *"


def _hour_and_minute(node_id: str, text: str) -> tuple[int, int]:
    """Dify's visual time, "H:MM AM|PM", as the 24-hour clock."""
    try:
        clock, period = text.strip().split()
        hour_text, minute_text = clock.split(":")
        hour, minute = int(hour_text), int(minute_text)
    except ValueError:
        raise TriggerConfigError(node_id, f"Invalid time format: {text!r}, expected "
                                          "'HH:MM AM/PM'") from None
    if period.upper() not in {"AM", "PM"} or not 1 <= hour <= 12 or not 0 <= minute <= 59:
        raise TriggerConfigError(node_id, f"Invalid time: {text!r}")
    return hour % 12 + (12 if period.upper() == "PM" else 0), minute


def schedule_inputs(tick_local_iso: str) -> dict[str, Any]:
    """A scheduled run's inputs (Dify's): the tick's time in the schedule's zone."""
    return {"current_time": tick_local_iso}


# --- webhooks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class WebhookConfig:
    method: str
    content_type: str
    headers: tuple[Parameter, ...]
    params: tuple[Parameter, ...]
    body: tuple[Parameter, ...]
    status_code: int
    response_body: str

    @classmethod
    def of(cls, node_id: str, data: Mapping[str, Any]) -> WebhookConfig:
        method = str(data.get("method") or "get").lower()
        if method not in METHODS:
            raise TriggerConfigError(node_id, f"unsupported method {method!r}")
        content_type = str(data.get("content_type") or JSON).lower()
        if content_type not in CONTENT_TYPES:
            raise TriggerConfigError(node_id, f"unsupported content type {content_type!r}")
        status = data.get("status_code", 200)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise TriggerConfigError(node_id, f"invalid status code {status!r}")
        return cls(method=method, content_type=content_type,
                   headers=_parameters(node_id, data.get("headers")),
                   params=_parameters(node_id, data.get("params")),
                   body=_parameters(node_id, data.get("body")), status_code=status,
                   response_body=str(data.get("response_body") or ""))


def _parameters(node_id: str, raw: Any) -> tuple[Parameter, ...]:
    found = []
    for item in raw or []:
        name, kind = (item or {}).get("name"), (item or {}).get("type", "string")
        if not isinstance(name, str) or not name or kind not in PARAMETER_TYPES:
            raise TriggerConfigError(node_id, f"invalid webhook parameter {item!r}")
        found.append(Parameter(name, kind, bool(item.get("required"))))
    return tuple(found)


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook call as received: `form` holds a multipart body's fields (the gateway parses
    those); any other body arrives as `raw`."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    content_type: str
    raw: bytes
    form: Mapping[str, str] | None = None


def webhook_inputs(config: WebhookConfig, request: WebhookRequest) -> dict[str, Any]:
    """The run's inputs (Dify's `webhook_data` and its parts) for a call that fits the node;
    WebhookRequestError for one that does not."""
    if request.method.lower() != config.method:
        raise WebhookRequestError(f"HTTP method mismatch. Expected {config.method.upper()}, "
                                  f"got {request.method.upper()}")
    content_type = (request.content_type or JSON).split(";")[0].strip().lower()
    if content_type != config.content_type:
        raise WebhookRequestError(f"Content-type mismatch. Expected {config.content_type}, "
                                  f"got {content_type}")
    declared = {"content-type"} | {n for h in config.headers
                                   for n in (h.name.lower(), h.name.lower().replace("_", "-"))}
    # only the headers the node declares (and content-type) are kept: the run's inputs are
    # stored for good and shown to app readers, and a call's other headers carry its
    # credentials (Authorization, Cookie, API keys)
    headers = {k: v for k, v in request.headers.items() if k.lower() in declared}
    lowered = {k.lower() for k in headers}
    for header in config.headers:
        if header.required and header.name.lower() not in lowered and \
                header.name.lower().replace("_", "-") not in lowered:
            raise WebhookRequestError(f"Required header missing: {header.name}")
    query = _checked(dict(request.query), config.params, as_text=True, what="parameter")
    body = _body(config, request)
    data = {"method": request.method.upper(), "headers": headers,
            "query_params": query, "body": body, "files": {}}
    return {"webhook_data": data, "webhook_headers": data["headers"],
            "webhook_query_params": query, "webhook_body": body}


def _body(config: WebhookConfig, request: WebhookRequest) -> dict[str, Any]:
    if config.content_type in {TEXT, BINARY}:
        # binary bodies are taken as text too: runs hold JSON, and Eddy has no tool files
        raw = request.raw.decode("utf-8", errors="replace")
        if not raw and any(p.required for p in config.body):
            raise WebhookRequestError(f"Required body content missing for "
                                      f"{config.content_type} request")
        return {"raw": raw}
    if config.content_type == JSON:
        try:
            parsed = orjson.loads(request.raw) if request.raw.strip() else {}
        except orjson.JSONDecodeError as error:
            raise WebhookRequestError(f"Invalid JSON body: {error}") from None
        if not isinstance(parsed, dict):
            raise WebhookRequestError("The JSON body must be an object")
        return _checked(parsed, config.body, as_text=False, what="body parameter")
    fields = dict(request.form or {}) if config.content_type == FORM_DATA else dict(
        parse_qsl(request.raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    return _checked(fields, [p for p in config.body if p.type != "file"], as_text=True,
                    what="body parameter")


def _checked(values: dict[str, Any], parameters: Any, *, as_text: bool,
             what: str) -> dict[str, Any]:
    """The configured parameters present and of their type (text values converted); the
    others passed on as they came."""
    checked = dict(values)
    for p in parameters:
        if p.name not in values:
            if p.required:
                raise WebhookRequestError(f"Required {what} missing: {p.name}")
            continue
        try:
            checked[p.name] = _from_text(values[p.name], p.type) if as_text else \
                _typed(values[p.name], p.type)
        except ValueError as error:
            raise WebhookRequestError(f"Parameter '{p.name}' validation failed: "
                                      f"{error}") from None
    return checked


def _from_text(value: str, kind: str) -> Any:
    if kind == "string":
        return value
    if kind == "number":
        number = float(value)  # ValueError: not a number
        return int(number) if number.is_integer() else number
    if kind == "boolean":
        if value.lower() not in _TRUTH:
            raise ValueError(f"Cannot convert '{value}' to boolean")
        return _TRUTH[value.lower()]
    raise ValueError(f"Unsupported type '{kind}' for form data")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "boolean": (bool,), "object": (dict,)}


def _typed(value: Any, kind: str) -> Any:
    if kind.startswith("array["):
        item = kind[len("array["):-1]
        if not isinstance(value, list) or not all(_is(v, item) for v in value):
            raise ValueError(f"Expected array of {item}s, got {type(value).__name__}")
    elif kind != "file" and not _is(value, kind):
        raise ValueError(f"Expected {kind}, got {type(value).__name__}")
    return value


def _is(value: Any, kind: str) -> bool:
    if kind == "number" and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[kind])


def webhook_response(config: WebhookConfig) -> tuple[Any, int]:
    """What the caller gets at once (Dify's): the node's response body (JSON if it is JSON,
    else as the message) with its status code."""
    body = config.response_body
    if not body:
        return {"status": "success", "message": "Webhook processed successfully"}, \
            config.status_code
    if body.strip().startswith(("{", "[")):
        try:
            return orjson.loads(body), config.status_code
        except orjson.JSONDecodeError:
            pass
    return {"message": body}, config.status_code


# --- what a trigger node outputs when its run starts there ------------------------------------


def trigger_outputs(node_type: str, data: Mapping[str, Any],
                    inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule node passes the run's inputs on; a webhook node its configured headers
    (`-` as `_`), query parameters and body fields, and the whole call as `_webhook_raw`."""
    if node_type == TRIGGER_SCHEDULE:
        return dict(inputs)
    config = WebhookConfig.of("", data)
    call = inputs.get("webhook_data") or {}
    headers = {k.lower(): v for k, v in (call.get("headers") or {}).items()}
    outputs: dict[str, Any] = {}
    for header in config.headers:
        name = header.name.lower()
        outputs[header.name.replace("-", "_")] = headers.get(
            name, headers.get(name.replace("_", "-")))
    for param in config.params:
        outputs[param.name] = (call.get("query_params") or {}).get(param.name)
    body = call.get("body") or {}
    for field in config.body:
        outputs[field.name] = body.get("raw", "") if config.content_type in {TEXT, BINARY} \
            else body.get(field.name)
    outputs["_webhook_raw"] = call
    return outputs


def trigger_nodes(graph: Any) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(node id, type, data) of a stored graph's trigger nodes; malformed nodes (a version an
    older release stored) are not triggers."""
    nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
    found = []
    for node in nodes if isinstance(nodes, list) else []:
        data = node.get("data") if isinstance(node, Mapping) else None
        if isinstance(data, Mapping) and data.get("type") in TRIGGER_NODE_TYPES:
            found.append((str(node.get("id")), str(data["type"]), data))
    return found


def check_triggers(graph: Any) -> None:
    """A graph's trigger nodes as published (a draft may hold a half-made one while it is
    edited): TriggerConfigError names the first whose settings name no schedule or webhook."""
    webhooks = 0
    for node_id, node_type, data in trigger_nodes(graph):
        if node_type == TRIGGER_SCHEDULE:
            schedule_of(node_id, data)
            continue
        WebhookConfig.of(node_id, data)
        webhooks += 1
        if webhooks > MAX_WEBHOOKS:
            raise TriggerConfigError(node_id, f"Workflow exceeds maximum webhook node "
                                              f"limit ({MAX_WEBHOOKS})")
