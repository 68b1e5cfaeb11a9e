"""Knowledge read-model rows in Dify's Service API response shapes."""

from __future__ import annotations

from typing import Any

from gateway.views import timestamp
from projections.knowledge.retrieval import RetrievedSegment
from schemas.knowledge.naming import BUILT_IN_METADATA_FIELDS

DEFAULT_RETRIEVAL_MODEL: dict[str, Any] = {
    "search_method": "semantic_search",
    "reranking_enable": False,
    "reranking_mode": None,
    "reranking_model": {"reranking_provider_name": "", "reranking_model_name": ""},
    "weights": None,
    "top_k": 4,
    "score_threshold_enabled": False,
    "score_threshold": 0.0,  # Dify's RetrievalModel default; a number, never null
}


def retrieval_model_view(stored: dict[str, Any] | None) -> dict[str, Any]:
    model = {**DEFAULT_RETRIEVAL_MODEL, **(stored or {})}
    threshold = model["score_threshold"]
    model["score_threshold"] = 0.0 if threshold is None else float(threshold)
    return model


def dataset_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "provider": "vendor",
        "permission": row["permission"],
        "data_source_type": "upload_file" if row["document_count"] else None,
        "indexing_technique": row["indexing_technique"],
        "app_count": 0,
        "document_count": row["document_count"],
        "word_count": row["word_count"],
        "created_by": str(row["created_by"]),
        "author_name": row.get("author_name"),
        "created_at": timestamp(row["created_at"]),
        "updated_by": str(row["updated_by"]) if row["updated_by"] else None,
        "updated_at": timestamp(row["updated_at"]),
        "embedding_model": row["embedding_model"],
        "embedding_model_provider": row["embedding_model_provider"],
        "embedding_available": True,
        "retrieval_model_dict": retrieval_model_view(row["retrieval_model"]),
        "tags": [{"id": t["id"], "name": t["name"], "type": t["type"]}
                 for t in row.get("tags") or []],
        "doc_form": row.get("doc_form"),
        "external_knowledge_info": None,
        "external_retrieval_model": None,
        # Dify's Dataset.doc_metadata: custom fields, then the built-ins when enabled
        "doc_metadata": [*(row.get("doc_metadata_fields") or []),
                         *({"id": "built-in", "name": name, "type": kind}
                           for name, kind in BUILT_IN_METADATA_FIELDS.items()
                           if row.get("built_in_field_enabled"))],
        "built_in_field_enabled": bool(row.get("built_in_field_enabled")),
        # Knowledge pipelines, summary indexes and multimodal datasets do not exist here:
        # every dataset is a classic ("general") one, as Dify's created through this API.
        "pipeline_id": None,
        "runtime_mode": "general",
        "chunk_structure": None,
        "icon_info": None,
        "summary_index_setting": None,
        "is_published": False,
        "total_documents": row["document_count"],
        "total_available_documents": row["available_document_count"],
        "enable_api": True,
        "is_multimodal": False,
        "maintainer": row.get("author_name"),
        # members are not kept: "partial_members" datasets list none
        "partial_member_list": [],
    }


def display_status(row: dict[str, Any]) -> str:
    """Dify's Document.display_status."""
    status = row["indexing_status"]
    if status == "waiting":
        return "queuing"
    if status in ("parsing", "cleaning", "splitting", "indexing"):
        return "paused" if row["is_paused"] else "indexing"
    if status == "error":
        return "error"
    if row["archived"]:
        return "archived"
    return "available" if row["enabled"] else "disabled"


def upload_file_view(source: dict[str, Any]) -> dict[str, Any]:
    """Dify's UploadFile as documents show it."""
    return {"id": source["id"], "name": source["name"], "size": source["size"],
            "extension": source["extension"], "mime_type": source.get("mime_type"),
            "created_by": source["created_by"], "created_at": source["created_at"]}


def document_view(row: dict[str, Any]) -> dict[str, Any]:
    source = row["source"]
    return {
        "id": str(row["id"]),
        "position": row["position"],
        "data_source_type": row["data_source_type"],
        "data_source_info": {"upload_file_id": source["id"]},
        "data_source_detail_dict": {"upload_file": upload_file_view(source)},
        "dataset_process_rule_id": str(row["process_rule_id"]),
        "name": row["name"],
        "created_from": row["created_from"],
        "created_by": str(row["created_by"]),
        "created_at": timestamp(row["created_at"]),
        "tokens": row["tokens"],
        "indexing_status": row["indexing_status"],
        "error": row["error"],
        "enabled": row["enabled"],
        "disabled_at": timestamp(row["disabled_at"]),
        "disabled_by": str(row["disabled_by"]) if row["disabled_by"] else None,
        "archived": row["archived"],
        "display_status": display_status(row),
        "word_count": row["word_count"],
        "hit_count": 0,
        "doc_form": row["doc_form"],
        "doc_language": row["doc_language"],
        "doc_metadata": document_metadata_view(row),
        "process_rule": row["process_rule"],
        "summary_index_status": None,
        "need_summary": False,
    }


def process_rule_view(rule_id: Any, rule: dict[str, Any], dataset_id: Any) -> dict[str, Any]:
    """Dify's DatasetProcessRule.to_dict."""
    return {"id": str(rule_id), "dataset_id": str(dataset_id), "mode": rule["mode"],
            "rules": rule.get("rules")}


def document_detail_view(row: dict[str, Any],
                         dataset_rule: dict[str, Any] | None) -> dict[str, Any]:
    """Dify's DocumentApi.get answer: the file object itself under data_source_info, both
    process rules (the dataset's latest and the document's own), progress and timings."""
    segments = row["total_segments"]
    document_rule = process_rule_view(row["process_rule_id"], row["process_rule"],
                                      row["dataset_id"])
    return {
        **document_view(row),
        "data_source_info": {"upload_file": upload_file_view(row["source"])},
        "dataset_id": str(row["dataset_id"]),
        "dataset_process_rule": process_rule_view(
            dataset_rule["process_rule_id"], dataset_rule["process_rule"], row["dataset_id"])
        if dataset_rule else document_rule,
        "document_process_rule": document_rule,
        "doc_type": None,  # Dify's legacy document types are not kept
        "completed_at": timestamp(row["completed_at"]),
        "updated_at": timestamp(row["updated_at"]),
        "indexing_latency": (row["completed_at"] - row["processing_started_at"]).total_seconds()
        if row["completed_at"] and row["processing_started_at"] else None,
        "completed_segments": row["completed_segments"],
        "total_segments": segments,
        "segment_count": segments,
        "average_segment_length": row["word_count"] // segments if segments else 0,
    }


def indexing_status_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "indexing_status": row["indexing_status"],
        "processing_started_at": timestamp(row["processing_started_at"]),
        "parsing_completed_at": timestamp(row["parsing_completed_at"]),
        "cleaning_completed_at": timestamp(row["cleaning_completed_at"]),
        "splitting_completed_at": timestamp(row["splitting_completed_at"]),
        "completed_at": timestamp(row["completed_at"]),
        "paused_at": timestamp(row["paused_at"]),
        "error": row["error"],
        "stopped_at": timestamp(row["stopped_at"]),
        "completed_segments": row["completed_segments"],
        "total_segments": row["total_segments"],
    }


def segment_view(row: dict[str, Any]) -> dict[str, Any]:
    # A segment the split made is its document's creator's (as in Dify's IndexingRunner).
    created_by = row["created_by"] or row["document_created_by"]
    return {
        "id": str(row["id"]),
        "position": row["position"],
        "document_id": str(row["document_id"]),
        "content": row["content"],
        "sign_content": row["content"],
        "answer": row["answer"],
        "word_count": row["word_count"],
        "tokens": row["tokens"],
        "keywords": row["keywords"],
        "index_node_id": str(row["id"]),
        "index_node_hash": row["index_node_hash"],
        "hit_count": row["hit_count"],
        "enabled": row["enabled"],
        "disabled_at": timestamp(row["disabled_at"]),
        "disabled_by": None,
        "status": row["status"],
        "created_by": str(created_by),
        "created_at": timestamp(row["created_at"]),
        "updated_at": timestamp(row["updated_at"]),
        # the last to change it: its creator until someone edits it
        "updated_by": str(row["updated_by"] or created_by),
        "indexing_at": timestamp(row["indexing_at"]),
        "completed_at": timestamp(row["completed_at"]),
        "error": None,
        "stopped_at": None,
        "child_chunks": [child_chunk_view(row, c) for c in row["child_chunks"]],
        "attachments": [],
        "summary": None,  # no summary index
    }


def child_chunk_view(segment: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    # Child chunks have no timestamps of their own: their segment's stand in.
    return {"id": child["id"], "segment_id": str(segment["id"]), "content": child["content"],
            "position": child["position"], "word_count": child["word_count"],
            "type": child.get("type", "automatic"),
            "created_at": timestamp(segment["created_at"]),
            "updated_at": timestamp(segment["updated_at"])}


def document_metadata_view(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Dify's Document.doc_metadata_details: [{id, name, type, value}], the built-in
    fields (id "built-in") included when the dataset enables them."""
    values = list(row.get("doc_metadata_details") or [])
    if row.get("built_in_field_enabled"):
        built_in = {
            "document_name": row["name"], "uploader": row.get("uploader_name"),
            # strings, as Dify's Document.get_built_in_fields gives them
            "upload_date": str(row["created_at"].timestamp()),
            "last_update_date": str(row["updated_at"].timestamp()),
            "source": "file_upload" if row["data_source_type"] == "upload_file"
            else row["data_source_type"],
        }
        values += [{"id": "built-in", "name": name, "type": kind, "value": built_in[name]}
                   for name, kind in BUILT_IN_METADATA_FIELDS.items()]
    return values


def tag_view(row: dict[str, Any]) -> dict[str, Any]:
    # binding_count is a string in Dify's schema
    return {"id": str(row["id"]), "name": row["name"], "type": row["type"],
            "binding_count": str(row.get("binding_count") or 0)}


def metadata_field_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "type": row["type"]}


def retrieval_record_view(found: RetrievedSegment) -> dict[str, Any]:
    row = found.row
    children = {c["id"]: c for c in row["child_chunks"]}
    segment = segment_view(row)
    segment["document"] = {
        "id": str(row["document_id"]),
        "data_source_type": row["document_data_source_type"],
        "name": row["document_name"],
        "doc_type": None,
        "doc_metadata": None,
    }
    return {
        "segment": segment,
        "child_chunks": [{"id": cid, "content": children[cid]["content"],
                          "position": children[cid]["position"], "score": score}
                         for cid, score in found.child_hits],
        "score": found.score,
        "tsne_position": None,
        "files": [],
        "summary": None,  # no summary index
    }
