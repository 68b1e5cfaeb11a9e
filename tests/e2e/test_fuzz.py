"""Schemathesis over Dify's Service API spec (docs/dify/openapi_service.json) against Eddy
over real HTTP: every operation, generated bodies and parameters (valid and invalid), with
an app key and a knowledge key. No answer may be a 5xx or hang, and every 2xx must match
the spec's response schema.

Path ids are sometimes real (a dataset with an indexed document, a segment, metadata, a
conversation, a message, an upload, an annotation), so generated input reaches the code
behind the lookups and not only the 404s. Deleting operations run last, so the real
resources live through the rest. The short form runs in CI; `-m slow` runs the long one.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from schemas.conversation.naming import end_user_id_for
from tests.chat import Chat
from tests.harness import eventually, served
from tests.spec import spec_document
from tests.spec_conformance import DIFY_ANSWERS

USER = "fuzz-user"
# A request that takes longer than this is a hang (the chat answers come from the fake LLM
# at once; nothing else waits on anything outside the machine).
REQUEST_TIMEOUT_SECONDS = 30
KNOWLEDGE_PATHS = ("/datasets", "/workspaces")


_MODEL_PROVIDER = ("/paths/~1workspaces~1current~1models~1model-types~1{model_type}/get/responses"
                   "/200/content/application~1json/schema/properties/data/items/properties")
# Properties the spec declares non-null where null is the answer: JSON pointer -> why.
NULL_ALLOWED = {
    "/components/schemas/Dataset/properties/data_source_type":
        "the spec's own description: `null` if not yet configured",
    f"{_MODEL_PROVIDER}/icon_small_dark":
        "the spec's own description and example: `null` when the provider has none",
    f"{_MODEL_PROVIDER}/icon_small":
        "Eddy serves no provider icons (Dify's are files of its plugins), so null as for "
        "icon_small_dark",
}


def fuzzed_schema() -> schemathesis.schemas.BaseSchema:
    """The spec with the answers Dify itself gives where its schema says otherwise
    (`DIFY_ANSWERS`, shared with the conformance checker, and `NULL_ALLOWED`)."""
    spec = copy.deepcopy(spec_document())
    for (name, prop), schema in DIFY_ANSWERS.items():
        spec["components"]["schemas"][name]["properties"][prop] = schema
    for pointer in NULL_ALLOWED:
        node = spec
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        node["nullable"] = True
    return schemathesis.openapi.from_dict(spec)


@dataclass
class Findings:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    answered: dict[str, Counter[int]] = field(default_factory=dict)  # operation -> statuses
    operations: set[str] = field(default_factory=set)
    problems: dict[str, str] = field(default_factory=dict)  # one example per kind of problem
    slowest: list[tuple[float, str]] = field(default_factory=list)  # reported, not asserted

    def add(self, kind: str, detail: str) -> None:
        self.problems.setdefault(kind, detail)


def _run_order(label: str) -> tuple[int, str]:
    """Deletions last (a dataset's deletion last of all), so the real ids stay real."""
    method, path = label.split(" ", 1)
    return (2 if path == "/datasets/{dataset_id}" else 1) if method == "DELETE" else 0, label


@dataclass
class Fuzzer:
    """Runs the spec's operations against one server; blocking (requests), so it runs in a
    thread beside the server's event loop."""

    base_url: str
    app_key: str
    dataset_key: str
    real: dict[str, str]  # path parameter name -> the id of a real resource
    session: requests.Session = field(default_factory=requests.Session)
    findings: Findings = field(default_factory=Findings)

    def run(self, max_examples: int, derandomize: bool) -> Findings:
        operations = [r.ok() for r in fuzzed_schema().get_all_operations()]
        for operation in sorted(operations, key=lambda o: _run_order(o.label)):
            self.findings.operations.add(operation.label)
            self.fuzz(operation, max_examples, derandomize)
        return self.findings

    def fuzz(self, operation: schemathesis.APIOperation, max_examples: int,
             derandomize: bool) -> None:
        names = {p.name for p in operation.path_parameters}
        known = {name: value for name, value in self.real.items() if name in names}
        user = {"user": USER} if any(p.name == "user" for p in operation.query) else None
        strategies = [operation.as_strategy(generation_mode=mode)
                      for mode in schemathesis.GenerationMode]
        if known:
            strategies += [operation.as_strategy(generation_mode=mode, path_parameters=known,
                                                 query=user)
                           for mode in schemathesis.GenerationMode]

        @hypothesis.settings(max_examples=max_examples, derandomize=derandomize,
                             deadline=None, database=None, phases=[hypothesis.Phase.generate],
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(case=st.one_of(strategies))
        def exercise(case: schemathesis.Case) -> None:
            self.send(case)

        exercise()

    def send(self, case: schemathesis.Case) -> None:
        label = case.operation.label
        key = self.dataset_key if case.operation.path.startswith(KNOWLEDGE_PATHS) \
            else self.app_key
        headers = {"Authorization": f"Bearer {key}"}
        self.findings.requests += 1
        started = time.monotonic()
        try:
            response = case.call(base_url=self.base_url, session=self.session, headers=headers,
                                 timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.Timeout:
            self.findings.add(f"hang {label}", case.as_curl_command(headers))
            return
        self.findings.slowest = sorted([*self.findings.slowest, (
            time.monotonic() - started, f"{response.status_code} {case.as_curl_command()}")],
            reverse=True)[:5]
        self.findings.statuses[response.status_code] += 1
        self.findings.answered.setdefault(label, Counter())[response.status_code] += 1
        checks = [not_a_server_error]
        # The spec's defect: a text/event-stream answer's schema is `type: string` (the whole
        # stream), which schemathesis applies to each parsed event, so none can match. The
        # events are checked against the spec's event schemas by tests/spec.py instead.
        streamed = response.headers.get("content-type", [""])[0].startswith(
            "text/event-stream")
        if 200 <= response.status_code < 300 and not streamed:
            checks.append(response_schema_conformance)
        if response.status_code == 202 and "202" not in case.operation.definition.raw.get(
                "responses", {}):
            # Eddy's answer when a write's outcome is not seen in time: here, a stall (a
            # poisoned projection stalls every later write of the app or dataset too).
            self.findings.add(f"pending {label}", case.as_curl_command())
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as failed:
            self.findings.add(f"{response.status_code} {label}", str(failed)[:3000])


async def real_resources(chat: Chat, dataset_key: dict[str, str]) -> dict[str, str]:
    """One of each resource a path names, for the variant of each operation that uses it."""
    client = chat.node.client
    sent = await chat.send("Hello there", user=USER)
    assert sent.status_code == 200, sent.text
    message = sent.json()
    upload = await client.post("/v1/files/upload", headers=chat.key, data={"user": USER},
                               files={"file": ("notes.txt", b"hello", "text/plain")})
    assert upload.status_code == 201, upload.text
    annotation = await client.post("/v1/apps/annotations", headers=chat.key,
                                   json={"question": "Q?", "answer": "A."})
    assert annotation.status_code == 201, annotation.text
    dataset = await client.post("/v1/datasets", headers=dataset_key, json={
        "name": "Fuzzed", "indexing_technique": "economy"})
    assert dataset.status_code == 200, dataset.text
    dataset_id = dataset.json()["id"]
    created = await client.post(f"/v1/datasets/{dataset_id}/document/create-by-text",
                                headers=dataset_key, json={
                                    "name": "notes", "text": "First note.\n\nSecond note.",
                                    "indexing_technique": "economy",
                                    "process_rule": {"mode": "automatic"}})
    assert created.status_code == 200, created.text
    document_id, batch = created.json()["document"]["id"], created.json()["batch"]

    async def segments() -> list[dict[str, Any]]:
        r = await client.get(f"/v1/datasets/{dataset_id}/documents/{document_id}/segments",
                             headers=dataset_key)
        return r.json()["data"]  # type: ignore[no-any-return]

    segment_id = (await eventually(segments, timeout=60))[0]["id"]
    metadata = await client.post(f"/v1/datasets/{dataset_id}/metadata", headers=dataset_key,
                                 json={"type": "string", "name": "author"})
    assert metadata.status_code == 201, metadata.text
    return {
        "conversation_id": message["conversation_id"], "message_id": message["message_id"],
        "task_id": message["task_id"], "file_id": upload.json()["id"],
        "annotation_id": annotation.json()["id"],
        "end_user_id": str(end_user_id_for(chat.app_id, USER)),
        "dataset_id": dataset_id, "document_id": document_id, "batch": batch,
        "segment_id": segment_id, "metadata_id": metadata.json()["id"],
    }


async def run_fuzz(chat: Chat, max_examples: int, derandomize: bool) -> Findings:
    await chat.configure()
    auth = chat.auth
    token = (await chat.node.client.post("/console/api/datasets/api-keys",
                                         headers=auth)).json()["token"]
    dataset_key = {"Authorization": f"Bearer {token}"}
    real = await real_resources(chat, dataset_key)
    async with served(chat.node.app) as url:
        fuzzer = Fuzzer(f"{url}/v1", chat.key["Authorization"].removeprefix("Bearer "), token,
                        real)
        findings = await asyncio.to_thread(fuzzer.run, max_examples, derandomize)
    print(f"fuzzed {len(findings.operations)} operations, {findings.requests} requests, "
          f"statuses {dict(sorted(findings.statuses.items()))}")
    for label, statuses in sorted(findings.answered.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    for seconds, request in findings.slowest:
        print(f"slow: {seconds:.1f}s {request[:400]}")
    return findings


def assert_clean(findings: Findings) -> None:
    assert findings.requests > 0 and len(findings.operations) >= 80
    assert not findings.problems, "\n\n".join(
        f"== {kind}\n{detail}" for kind, detail in sorted(findings.problems.items()))


async def test_service_api_fuzz_short(chat: Chat) -> None:
    # the same examples on every run: CI fails only on a change
    assert_clean(await run_fuzz(chat, max_examples=6, derandomize=True))


@pytest.mark.slow
async def test_service_api_fuzz_long(chat: Chat) -> None:
    assert_clean(await run_fuzz(chat, max_examples=100, derandomize=False))
