"""The `knowledge-retrieval` node, as Dify's: the query searched in the node's datasets.

`multiple` mode searches every dataset with the node's `multiple_retrieval_config` (top_k,
score threshold, reranking by the workspace's rerank model or Dify's weighted score) and
keeps the best `top_k` overall; `single` mode has the node's model pick the one dataset that
fits the query (a tool per dataset) and searches it with that dataset's own settings.
`metadata_filtering_mode: manual` searches only documents whose metadata match the
conditions (their values may reference variables); `automatic` has a model write the
conditions from the query. `result` is Dify's list of
{content, title, metadata{_source, dataset_id, document_id, segment_id, score, ...}}."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, get_args
from uuid import UUID

from adapters.llm.openai_protocol import ProviderError
from projections.knowledge import meta_queries as metadata
from projections.knowledge import queries as knowledge
from projections.knowledge.retrieval import RetrievalSettings, RetrievedSegment
from schemas.errors import EddyError
from schemas.knowledge.api import MetadataComparison
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workers.workflow.nodes.model_calls import (
    ask,
    json_in,
    node_model,
    selected,
    services,
    total_usage,
)
from workflow_graph.variables import to_text

ERROR_TYPE = "KnowledgeRetrievalNodeError"
OPERATORS = frozenset(get_args(MetadataComparison))
AUTO_FILTER_PROMPT = (
    "Turn the user's question into filters on the documents' metadata, where it names "
    "something one of the fields below can match. Answer only with JSON: "
    '{{"conditions": [{{"name": "<field>", "comparison_operator": "<operator>", '
    '"value": "<value>"}}]}}, or {{"conditions": []}} when nothing applies.\n'
    "Operators: for string fields contains, not contains, start with, end with, is, is not; "
    "for number fields =, ≠, >, <, ≥, ≤; for time fields before, after.\n"
    "Fields (name: type): {fields}")
ROUTER_PROMPT = ("Pick the one knowledge base that best answers the user's question by "
                 "calling its function.")
ROUTER_PROMPT_JSON = ("Pick the one knowledge base that best answers the user's question. "
                      "Answer only with JSON: {{\"dataset_id\": \"...\"}}. Knowledge bases:\n"
                      "{datasets}")

Dataset = dict[str, Any]


async def run(call: NodeCall) -> NodeResult:
    data = call.node.data
    query = to_text(selected(call, data.get("query_variable_selector")))
    if not query:
        raise NodeError("Query is required.", "QueryIsRequiredError")
    datasets = await _datasets(call, data.get("dataset_ids") or [])
    usage: dict[str, Any] | None = None
    try:
        filters, filter_usage = await _metadata_filters(call, data, datasets, query)
        if not datasets:
            found: list[tuple[Dataset, RetrievedSegment]] = []
        elif data.get("retrieval_mode") == "single":
            chosen, usage = await _route(call, data, datasets, query)
            found = [] if chosen is None else await _search(call, chosen, query, {
                "metadata_filtering_conditions": filters.get(chosen["id"])},
                chosen["retrieval_model"] or {})
        else:
            found = await _multiple(call, data, datasets, query, filters)
        usage = total_usage(filter_usage, usage)
    except ProviderError as exc:  # the embedding or rerank model failed
        raise NodeError(exc.message or str(exc), ERROR_TYPE) from exc
    except EddyError as exc:  # no rerank model, a bad metadata condition
        raise NodeError(exc.message, ERROR_TYPE) from exc
    result = [_source(position, dataset, hit)
              for position, (dataset, hit) in enumerate(found, start=1)]
    return NodeResult(outputs={"result": result}, inputs={"query": query}, usage=usage,
                      process_data={"usage": usage} if usage else {})


async def _datasets(call: NodeCall, ids: Sequence[str]) -> list[Dataset]:
    """The workspace's datasets among `ids` that have documents to search (as in Dify,
    deleted and empty ones are left out: the single mode's router is not offered them)."""
    engine = services(call).engine
    found = []
    for raw in ids:
        try:
            dataset_id = UUID(str(raw))
        except ValueError:
            continue
        dataset = await knowledge.dataset(engine, call.run.tenant_id, dataset_id)
        if dataset is not None and await knowledge.searchable_document_ids(engine, dataset_id):
            found.append(dataset)
    return found


async def _metadata_filters(call: NodeCall, data: Mapping[str, Any], datasets: list[Dataset],
                            query: str) -> tuple[dict[UUID, Any], dict[str, Any] | None]:
    """The metadata conditions per dataset, and the usage of the model that wrote them:
    `manual` takes the node's (string values may reference variables), `automatic` has
    the node's `metadata_model_config` model write them from the query and the datasets'
    fields (each dataset filtered by the conditions on fields it has)."""
    mode = data.get("metadata_filtering_mode")
    if mode == "manual":
        raw = data.get("metadata_filtering_conditions") or {}
        conditions = {"logical_operator": raw.get("logical_operator") or "and", "conditions": [
            {**c, "value": call.pool.render(c["value"]) if isinstance(c.get("value"), str)
             else c.get("value")} for c in raw.get("conditions") or []]}
        return {d["id"]: conditions for d in datasets}, None
    if mode != "automatic" or not datasets:
        return {}, None
    engine = services(call).engine
    fields = {d["id"]: {f["name"]: f["type"] for f in await metadata.metadata_fields(
        engine, d["id"])} for d in datasets}
    known = {name: kind for named in fields.values() for name, kind in named.items()}
    if not known:
        return {}, None
    model = await node_model(call, data.get("metadata_model_config"))
    answer = await ask(call, model, [
        {"role": "system", "content": AUTO_FILTER_PROMPT.format(fields=json.dumps(
            known, ensure_ascii=False))}, {"role": "user", "content": query}])
    written = json_in(answer.text)
    conditions = [c for c in (written.get("conditions") if isinstance(written, dict)
                              else None) or []
                  if isinstance(c, dict) and c.get("name") in known
                  and c.get("comparison_operator") in OPERATORS]
    return {dataset_id: {"logical_operator": "and", "conditions": [
        c for c in conditions if c["name"] in named]} for dataset_id, named in fields.items()
    }, answer.usage


async def _search(call: NodeCall, dataset: Dataset, query: str, wanted: dict[str, Any],
                  dataset_default: dict[str, Any]) -> list[tuple[Dataset, RetrievedSegment]]:
    settings = RetrievalSettings.from_dify(wanted, dataset_default,
                                           dataset["indexing_technique"] == "economy")
    hits = await services(call).retriever.retrieve(dataset, query, settings)
    return [(dataset, hit) for hit in hits]


async def _multiple(call: NodeCall, data: Mapping[str, Any], datasets: list[Dataset],
                    query: str, filters: dict[UUID, Any],
                    ) -> list[tuple[Dataset, RetrievedSegment]]:
    config = data.get("multiple_retrieval_config") or {}
    top_k = int(config.get("top_k") or 4)
    threshold = config.get("score_threshold")
    rerank = config.get("reranking_model") or {}
    wanted: dict[str, Any] = {
        "top_k": top_k, "score_threshold": threshold,
        "score_threshold_enabled": threshold is not None,
        "reranking_enable": bool(config.get("reranking_enable", bool(rerank))),
        "reranking_mode": config.get("reranking_mode") or "reranking_model",
        "reranking_model": {"reranking_provider_name": rerank.get("provider"),
                            "reranking_model_name": rerank.get("model")}}
    if config.get("reranking_mode") == "weighted_score" and config.get("weights"):
        # Dify's weighted score: hybrid search, its halves weighed as the node says
        wanted |= {"search_method": "hybrid_search", "weights": config["weights"]}
    found = []
    for dataset in datasets:
        found += await _search(call, dataset, query, {
            **wanted, "metadata_filtering_conditions": filters.get(dataset["id"])},
            dataset["retrieval_model"] or {})
    found.sort(key=lambda f: -f[1].score)  # one rerank model's scores compare across sets
    return found[:top_k]


async def _route(call: NodeCall, data: Mapping[str, Any], datasets: list[Dataset],
                 query: str) -> tuple[Dataset | None, dict[str, Any] | None]:
    """Single mode: the dataset the model picks for the query (one dataset: that one)."""
    if len(datasets) == 1:
        return datasets[0], None
    model = await node_model(call, (data.get("single_retrieval_config") or {}).get("model"))
    by_tool = {str(d["id"]): d for d in datasets}  # a tool per dataset, named by its id
    if "tool-call" in model.features:
        answer = await ask(call, model, [
            {"role": "system", "content": ROUTER_PROMPT}, {"role": "user", "content": query}],
            tools=[{"type": "function", "function": {
                "name": name, "description": _description(d),
                "parameters": {"type": "object", "properties": {}, "required": []}}}
                for name, d in by_tool.items()])
        chosen = next((by_tool[c.name] for c in answer.tool_calls if c.name in by_tool), None)
        return chosen, answer.usage
    listing = "\n".join(f"- {d['id']}: {_description(d)}" for d in datasets)
    answer = await ask(call, model, [
        {"role": "system", "content": ROUTER_PROMPT_JSON.format(datasets=listing)},
        {"role": "user", "content": query}])
    picked = json_in(answer.text)
    wanted = str(picked.get("dataset_id")) if isinstance(picked, dict) else answer.text
    return next((d for d in datasets if str(d["id"]) in wanted), None), answer.usage


def _description(dataset: Dataset) -> str:
    """What the router is told a dataset is for (Dify's default when it has none)."""
    text = dataset["description"] or \
        f"useful for when you want to answer queries about the {dataset['name']}"
    return text.replace("\n", "").replace("\r", "")


def _source(position: int, dataset: Dataset, hit: RetrievedSegment) -> dict[str, Any]:
    """One result as Dify's knowledge-retrieval node gives it (what an LLM node's context
    reads: `content`)."""
    row = hit.row
    content = row["content"]
    if row.get("answer"):  # a Q&A segment
        content = f"question:{content} \nanswer:{row['answer']}"
    children = {c["id"]: c for c in row.get("child_chunks") or []}
    metadata: dict[str, Any] = {
        "_source": "knowledge", "position": position,
        "dataset_id": str(dataset["id"]), "dataset_name": dataset["name"],
        "document_id": str(row["document_id"]), "document_name": row["document_name"],
        "data_source_type": row["document_data_source_type"],
        "segment_id": str(row["id"]), "retriever_from": "workflow", "score": hit.score,
        "segment_hit_count": row["hit_count"], "segment_word_count": row["word_count"],
        "segment_position": row["position"], "segment_index_node_hash": row["index_node_hash"],
        "doc_metadata": row.get("doc_metadata"),
    }
    if hit.child_hits:
        metadata["child_chunks"] = [{"id": cid, "content": children[cid]["content"],
                                     "position": children[cid]["position"], "score": score}
                                    for cid, score in hit.child_hits if cid in children]
    return {"metadata": metadata, "title": row["document_name"], "content": content}
