"""Tags, metadata and child chunk rules, without infrastructure."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from bootstrap import ASSEMBLY
from commands.aggregate import Context
from commands.knowledge.aggregates import Dataset
from commands.knowledge.meta_handlers import coerce_metadata_value
from commands.knowledge.tags import TagName
from schemas.errors import BadRequest, MetadataNotFound, TagNameDuplicate
from schemas.knowledge.events import DatasetCreated, SegmentCreated, SegmentUpdated
from schemas.knowledge.naming import to_timestamp

upcast = ASSEMBLY.event_types.upcast


def _ctx(tenant: Any = None) -> Context:
    cid = uuid4()
    return Context(tenant_id=tenant or uuid4(), actor_id=uuid4(), correlation_id=cid,
                   causation_id=cid)


def _dataset(ctx: Context) -> Dataset:
    dataset = Dataset(uuid4())
    dataset.create(DatasetCreated(name="d", indexing_technique="economy", retrieval_model={},
                                  created_by=uuid4()), ctx)
    return dataset


def test_metadata_names_are_unique_and_not_built_in() -> None:
    ctx = _ctx()
    dataset = _dataset(ctx)
    first = uuid4()
    dataset.add_metadata_field(first, "author", "string", ctx)
    for name in ("author", "uploader", "", "x" * 256):
        with pytest.raises(BadRequest):
            dataset.add_metadata_field(uuid4(), name, "string", ctx)
    dataset.rename_metadata_field(first, "author", ctx)  # unchanged: no event
    replayed = Dataset.replay(dataset.id, dataset.pending)
    assert replayed.metadata_fields == {str(first): {"name": "author", "type": "string"}}
    assert replayed.version == 2
    replayed.delete_metadata_field(first, ctx)
    with pytest.raises(MetadataNotFound):
        replayed.rename_metadata_field(first, "writer", ctx)


def test_tag_name_is_held_by_one_tag() -> None:
    ctx, holder = _ctx(), uuid4()
    name = TagName(uuid4())
    name.claim(holder, ctx)
    name.claim(holder, ctx)  # the holder again: nothing to record
    with pytest.raises(TagNameDuplicate):
        name.claim(uuid4(), ctx)
    name.release(holder, ctx)
    name.claim(uuid4(), ctx)
    assert [e.type for e in name.pending] == ["TagNameClaimed", "TagNameReleased",
                                              "TagNameClaimed"]


def test_metadata_values_take_their_field_type() -> None:
    number = {"name": "n", "type": "number"}
    assert coerce_metadata_value(number, "3") == 3
    assert coerce_metadata_value(number, 2.5) == 2.5
    assert coerce_metadata_value({"name": "s", "type": "string"}, 7) == "7"
    assert coerce_metadata_value({"name": "t", "type": "time"}, "1970-01-02") == 86400
    assert coerce_metadata_value(number, None) is None
    for bad in ("many", "nan"):
        with pytest.raises(BadRequest):
            coerce_metadata_value(number, bad)
    assert to_timestamp("2024-05-01T02:00:00+02:00") == 1714521600


def test_v1_segment_child_chunks_are_automatic() -> None:
    child = {"id": str(uuid4()), "content": "c", "position": 1, "word_count": 1}
    for schema in (SegmentCreated, SegmentUpdated):
        version, payload = upcast(schema.event_type, 1, {"child_chunks": [child]})
        assert version == schema.schema_version == 2
        assert payload["child_chunks"] == [{**child, "type": "automatic"}]
