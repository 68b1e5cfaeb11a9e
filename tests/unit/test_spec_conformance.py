"""The checker the e2e harness runs on every knowledge answer catches what it must."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.spec_conformance import check_answer, knowledge_operations, operation_for

JSON = "application/json"


def _example(operation_id: str, status: str = "200") -> Any:
    op = next(o for o in knowledge_operations() if o.operation_id == operation_id)
    content = op.spec["responses"][status]["content"][JSON]
    return copy.deepcopy(next(iter(content["examples"].values()))["value"])


def _check(method: str, path: str, body: Any, status: int = 200,
           query: dict[str, str] | None = None) -> list[str]:
    return check_answer(method, path, query or {}, status, JSON, json.dumps(body).encode())


DATASET = "/v1/datasets/c42e2a6e-40b3-4330-96f8-f1e4d768e8c9"


def test_the_specs_own_examples_conform() -> None:
    assert _check("GET", DATASET, _example("getDatasetDetail")) == []
    assert _check("GET", f"{DATASET}/documents/a8e0e5b5-78c6-4130-a5ce-25feb0e0b4ac",
                  _example("getDocumentDetail")) == []
    assert _check("GET", f"{DATASET}/documents/d/segments", _example("listSegments")) == []


def test_a_missing_key_is_found_at_any_depth() -> None:
    dataset = _example("getDatasetDetail")
    del dataset["pipeline_id"]
    del dataset["retrieval_model_dict"]["score_threshold"]
    assert sorted(p.split(": ", 1)[1] for p in _check("GET", DATASET, dataset)) == [
        "(body).pipeline_id: missing (the spec's example has it)",
        "(body).retrieval_model_dict.score_threshold: missing (the spec's example has it)"]

    segments = _example("listSegments")
    del segments["data"][0]["summary"]
    segments["data"].append(copy.deepcopy(segments["data"][0]))
    assert [p.split(": ", 1)[1] for p in _check("GET", f"{DATASET}/documents/d/segments",
                                                 segments)] == [
        "(body).data[0].summary: missing (the spec's example has it)",
        "(body).data[1].summary: missing (the spec's example has it)"]


def test_a_wrong_type_is_found() -> None:
    dataset = _example("getDatasetDetail")
    dataset["created_at"] = "yesterday"
    dataset["document_count"] = 1.5
    problems = _check("GET", DATASET, dataset)
    assert any("created_at: 'yesterday' is not of type 'number'" in p for p in problems)
    assert any("document_count: 1.5 is not of type 'integer'" in p for p in problems)


def test_null_only_where_the_spec_or_dify_gives_it() -> None:
    dataset = _example("getDatasetDetail")
    dataset["data_source_type"] = None  # the spec's example shows null here
    dataset["indexing_technique"] = None  # Dify's answer before a first document
    assert _check("GET", DATASET, dataset) == []
    dataset["name"] = None
    assert [p for p in _check("GET", DATASET, dataset) if "name: None" in p]


def test_document_detail_narrowed_by_its_metadata_parameter() -> None:
    detail = _example("getDocumentDetail")
    path = f"{DATASET}/documents/{detail['id']}"
    only = {k: detail[k] for k in ("id", "doc_type", "doc_metadata")}
    assert _check("GET", path, only, query={"metadata": "only"}) == []
    assert _check("GET", path, only) != []  # the full answer was expected
    without = {k: v for k, v in detail.items() if k not in ("doc_type", "doc_metadata")}
    assert _check("GET", path, without, query={"metadata": "without"}) == []


def test_errors_must_have_difys_shape() -> None:
    path = f"{DATASET}/documents/x"
    good = {"code": "not_found", "message": "Document not found.", "status": 404}
    assert _check("GET", path, good, status=404) == []
    assert _check("GET", path, {**good, "status": 400}, status=404) != []
    assert _check("GET", path, {"detail": "Not Found"}, status=404) != []
    assert check_answer("GET", path, {}, 500, "text/plain", b"boom") != []


def test_statuses_bodies_and_paths_the_spec_does_not_document() -> None:
    assert _check("POST", "/v1/datasets", _example("createDataset"), status=201) != []
    assert check_answer("DELETE", DATASET, {}, 204, "", b"") == []
    assert check_answer("DELETE", DATASET, {}, 204, JSON, b'{"result": "success"}') != []
    assert check_answer("POST", f"{DATASET}/documents/download-zip", {}, 200,
                        "application/zip", b"PK...") == []
    assert check_answer("POST", f"{DATASET}/documents/download-zip", {}, 200, JSON,
                        b"{}") != []
    assert _check("GET", "/v1/datasets/x/no-such-thing", {}) != []


def test_literal_paths_and_older_names() -> None:
    tags = operation_for("GET", "/v1/datasets/tags")
    assert tags is not None and tags.operation_id == "getKnowledgeTags"
    detail = operation_for("GET", DATASET)
    assert detail is not None and detail.operation_id == "getDatasetDetail"
    for old, new in (("hit-testing", "retrieve"),
                     ("document/create_by_text", "document/create-by-text")):
        aliased = operation_for("POST", f"{DATASET}/{old}")
        canonical = operation_for("POST", f"{DATASET}/{new}")
        assert aliased is not None and aliased == canonical
