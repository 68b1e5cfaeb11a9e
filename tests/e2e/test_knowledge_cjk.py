"""Chinese, Japanese and Korean knowledge end to end over HTTP: keyword (economy), full-text,
semantic and hybrid search on a small Chinese corpus written for this test, with the
multilingual embedding model chosen per dataset; switching a dataset's model re-embeds it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from adapters.embeddings.local_minilm import LocalMiniLM
from adapters.embeddings.local_use import LocalUSE
from schemas.knowledge.naming import vector_collection
from tests.e2e.test_knowledge import create_text_document, dataset_key, wait_indexed
from tests.harness import Node, eventually

USE = LocalUSE.MODEL_NAME

# One fact per document, and a question paraphrasing it (Chinese, and English for some).
CORPUS: dict[str, tuple[str, list[str]]] = {
    "知识库": ("Eddy 的知识库把上传的文件切分成段落，并为每个段落建立索引，方便以后查找。",
            ["上传的文件会被怎样处理？"]),
    "向量检索": ("向量检索把问题和段落都变成向量，再按余弦相似度找出意思最接近的段落。",
             ["怎样按意思而不是按字面查找相似的段落？", "余弦相似度在检索中起什么作用？"]),
    "退款": ("顾客在三十天内可以退回未拆封的商品，并获得全额退款。",
           ["买的东西不想要了，多久之内可以退钱？", "How long do buyers have to return items?"]),
    "年假": ("员工申请年假需要至少提前两周向经理提交申请。",
           ["休假要提前多久跟老板说？"]),
    "机房": ("塔林的数据中心完全使用从当地合作社购买的风能供电。",
           ["爱沙尼亚的服务器机房用什么能源？", "What powers the data center in Tallinn?"]),
    "吉祥物": ("公司的吉祥物是一只名叫小石头的蓝色水獭，印在所有产品包装盒上。",
            ["产品盒子上印的是什么动物？", "Which animal is the company mascot?"]),
    "夜车": ("从维也纳开往威尼斯的夜间列车晚上九点四十分出发，第二天早上九点十分到达。",
           ["去意大利的过夜火车几点开？"]),
    "密码": ("密码必须每九十天更换一次，并且不能与最近五次使用过的密码相同。",
           ["多久要换一次登录口令？", "How often must passwords be changed?"]),
}


async def retrieve(node: Node, key: dict[str, str], dataset_id: str, query: str,
                   method: str, top_k: int = 3) -> list[str]:
    """The names of the documents of the records, best first."""
    r = await node.client.post(f"/v1/datasets/{dataset_id}/retrieve", headers=key, json={
        "query": query, "retrieval_model": {"search_method": method, "reranking_enable": False,
                                            "top_k": top_k, "score_threshold_enabled": False}})
    assert r.status_code == 200, r.text
    return [rec["segment"]["document"]["name"] for rec in r.json()["records"]]


async def chinese_dataset(node: Node, key: dict[str, str], technique: str,
                          **model: str) -> dict[str, Any]:
    created = await node.client.post("/v1/datasets", headers=key, json={
        "name": f"中文 {technique} {len(model)}", "indexing_technique": technique, **model})
    assert created.status_code == 200, created.text
    dataset: dict[str, Any] = created.json()
    batches = [(await create_text_document(node, key, dataset["id"], name, text))["batch"]
               for name, (text, _) in CORPUS.items()]
    for batch in batches:
        await wait_indexed(node.client, key, dataset["id"], batch)
    return dataset


async def test_chinese_corpus_is_found_by_every_search_method(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await chinese_dataset(node, key, "high_quality", embedding_model=USE,
                                    embedding_model_provider="local")
    assert (dataset["embedding_model"], dataset["embedding_model_provider"]) == (USE, "local")

    # full text and the keyword half of hybrid search find Chinese words inside sentences
    for method in ("full_text_search", "hybrid_search"):
        for query, name in [("向量检索", "向量检索"), ("知识库", "知识库"), ("风能", "机房"),
                            ("水獭", "吉祥物"), ("什么是向量检索？", "向量检索")]:
            assert (await retrieve(node, key, dataset["id"], query, method))[0] == name, (
                method, query)
    assert await retrieve(node, key, dataset["id"], "向量检索 -余弦", "full_text_search") == []

    # semantic search with the multilingual model: Chinese and English questions against
    # Chinese documents put the right document first
    for name, (_, questions) in CORPUS.items():
        for question in questions:
            found = await retrieve(node, key, dataset["id"], question, "semantic_search")
            assert found[0] == name, (question, found)

    # segments are sized in the dataset's model's tokens
    docs = (await node.client.get(f"/v1/datasets/{dataset['id']}/documents",
                                  headers=key)).json()["data"]
    doc = next(d for d in docs if d["name"] == "夜车")
    [segment] = (await node.client.get(f"/v1/datasets/{dataset['id']}/documents/{doc['id']}"
                                       "/segments", headers=key)).json()["data"]
    assert segment["tokens"] == LocalUSE().count_tokens(CORPUS["夜车"][0])
    assert segment["tokens"] != LocalMiniLM().count_tokens(CORPUS["夜车"][0])
    collection = vector_collection(UUID(dataset["id"]), "local", USE)
    assert await node.container.vectors.count(collection) == len(CORPUS)


async def test_economy_keyword_search_in_chinese_japanese_and_korean(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await chinese_dataset(node, key, "economy")
    for query, name in [("向量检索", "向量检索"), ("知识库", "知识库"), ("退款", "退款"),
                        ("维也纳 威尼斯", "夜车")]:
        assert (await retrieve(node, key, dataset["id"], query, "keyword_search"))[0] == name
    assert await retrieve(node, key, dataset["id"], "知识库 退款", "keyword_search") == []

    # economy segments carry their keywords, Chinese words included
    docs = (await node.client.get(f"/v1/datasets/{dataset['id']}/documents",
                                  headers=key)).json()["data"]
    doc = next(d for d in docs if d["name"] == "知识库")
    [segment] = (await node.client.get(f"/v1/datasets/{dataset['id']}/documents/{doc['id']}"
                                       "/segments", headers=key)).json()["data"]
    assert {"知识库", "段落", "索引"} <= set(segment["keywords"])
    # ... and so do segments added by hand without keywords; given ones are kept
    segments = f"/v1/datasets/{dataset['id']}/documents/{doc['id']}/segments"
    added = await node.client.post(segments, headers=key, json={"segments": [
        {"content": "备份服务器每天凌晨三点自动备份数据库。"},
        {"content": "冷却系统每周检查一次。", "keywords": ["冷却"]}]})
    assert added.status_code == 200, added.text
    [extracted, kept] = added.json()["data"]
    assert {"备份", "数据库"} <= set(extracted["keywords"]) and kept["keywords"] == ["冷却"]

    # Japanese and Korean by character pairs
    for name, text in [("ja", "このシステムはベクトル検索と全文検索に対応しています。"),
                       ("ko", "이 시스템은 벡터 검색과 전문 검색을 지원합니다.")]:
        created = await create_text_document(node, key, dataset["id"], name, text)
        await wait_indexed(node.client, key, dataset["id"], created["batch"])
    assert await retrieve(node, key, dataset["id"], "ベクトル検索", "keyword_search") == ["ja"]
    assert await retrieve(node, key, dataset["id"], "벡터 검색", "keyword_search") == ["ko"]
    assert await retrieve(node, key, dataset["id"], "검색", "keyword_search") == ["ko"]


async def test_switching_the_embedding_model_reembeds_the_dataset(node: Node) -> None:
    key = await dataset_key(node)
    dataset = await chinese_dataset(node, key, "high_quality")  # the default: MiniLM
    assert dataset["embedding_model"] == LocalMiniLM.MODEL_NAME
    old = vector_collection(UUID(dataset["id"]), "local", LocalMiniLM.MODEL_NAME)
    new = vector_collection(UUID(dataset["id"]), "local", USE)
    vectors = node.container.vectors
    assert await vectors.count(old) == len(CORPUS)
    question = "产品盒子上印的是什么动物？"  # the English model misses this one
    assert (await retrieve(node, key, dataset["id"], question, "semantic_search"))[0] != "吉祥物"

    # an unknown model is refused and changes nothing
    # (openai is a provider workspaces connect: this one has not, so Dify's error)
    for body, code in (({"embedding_model": "text-embedding-3-large"}, "invalid_param"),
                       ({"embedding_model": USE, "embedding_model_provider": "openai"},
                        "provider_not_initialize")):
        r = await node.client.patch(f"/v1/datasets/{dataset['id']}", headers=key, json=body)
        assert r.status_code == 400 and r.json()["code"] == code, r.text
    r = await node.client.post("/v1/datasets", headers=key, json={
        "name": "nope", "embedding_model": "text-embedding-3-large"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_param", r.text
    assert (await node.client.get("/v1/datasets", headers=key)).json()["total"] == 1

    r = await node.client.patch(f"/v1/datasets/{dataset['id']}", headers=key,
                                json={"embedding_model": USE})
    assert r.status_code == 200, r.text
    assert (r.json()["embedding_model"], r.json()["embedding_model_provider"]) == (USE, "local")

    async def reembedded() -> bool:
        return await vectors.count(new) == len(CORPUS) and await vectors.count(old) == 0
    await eventually(reembedded, timeout=120, interval=0.3)
    for batch_doc in (await node.client.get(f"/v1/datasets/{dataset['id']}/documents",
                                            headers=key)).json()["data"]:
        assert batch_doc["indexing_status"] == "completed"
    assert (await retrieve(node, key, dataset["id"], question, "semantic_search"))[0] == "吉祥物"
