"""An app's configuration over HTTP: the console's model config and site, and the Service
API's /parameters and /site answering from them (checked against Dify's spec)."""

from __future__ import annotations

from typing import Any

from tests.chat import app_with_key
from tests.harness import Node, add_account_with_workspace
from tests.spec import validate

FORM = [
    {"text-input": {"label": "City", "variable": "city", "required": True, "max_length": 20,
                    "default": ""}},
    {"select": {"label": "Tone", "variable": "tone", "required": False,
                "options": ["formal", "casual"], "default": "formal"}},
    {"paragraph": {"label": "Notes", "variable": "notes", "required": False}},
]


def model_config(**changes: Any) -> dict[str, Any]:
    return {
        "model": {"provider": "openai", "name": "gpt-4o-mini", "mode": "chat",
                  "completion_params": {"temperature": 0.2, "max_tokens": 256}},
        "pre_prompt": "You answer questions about {{city}}.",
        "opening_statement": "Hello! Ask me about your city.",
        "suggested_questions": ["What is there to see?"],
        "suggested_questions_after_answer": {"enabled": True},
        "retriever_resource": {"enabled": True},
        "sensitive_word_avoidance": {"enabled": True, "type": "keywords", "config": {
            "keywords": "forbidden\nsecret", "inputs_config": {
                "enabled": True, "preset_response": "I cannot talk about that."}}},
        "user_input_form": FORM,
        "file_upload": {"image": {"enabled": True, "number_limits": 2, "detail": "low",
                                  "transfer_methods": ["local_file"]}},
        **changes,
    }


async def test_model_config_drives_parameters(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth)

    before = await node.client.get("/v1/parameters", headers=key)
    assert before.status_code == 200
    validate("AppParametersResponse", before.json())
    assert before.json()["user_input_form"] == [] and before.json()["opening_statement"] == ""

    saved = await node.client.post(f"/console/api/apps/{app_id}/model-config", headers=auth,
                                   json=model_config())
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"result": "success"}

    params = (await node.client.get("/v1/parameters", headers=key)).json()
    validate("AppParametersResponse", params)
    assert params["opening_statement"] == "Hello! Ask me about your city."
    assert params["suggested_questions"] == ["What is there to see?"]
    assert params["suggested_questions_after_answer"] == {"enabled": True}
    assert params["sensitive_word_avoidance"] == {"enabled": True}
    assert params["user_input_form"][0] == {"text-input": {
        "label": "City", "variable": "city", "required": True, "max_length": 20, "default": "",
        "options": []}}
    assert params["user_input_form"][1]["select"]["options"] == ["formal", "casual"]
    assert params["file_upload"]["image"] == {"enabled": True, "number_limits": 2,
                                              "detail": "low", "transfer_methods": ["local_file"]}

    stored = (await node.client.get(f"/console/api/apps/{app_id}/model-config",
                                    headers=auth)).json()
    assert stored["model"]["name"] == "gpt-4o-mini"
    assert stored["pre_prompt"] == "You answer questions about {{city}}."


async def test_bad_model_configs_are_refused_and_change_nothing(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth)
    path = f"/console/api/apps/{app_id}/model-config"
    assert (await node.client.post(path, headers=auth, json=model_config())).status_code == 200

    bad = [
        model_config(user_input_form=[{"text-input": {"label": "x", "variable": "1city"}}]),
        model_config(user_input_form=[{"slider": {"label": "x", "variable": "level"}}]),
        model_config(user_input_form=[{"select": {"label": "x", "variable": "tone"}}]),
        model_config(user_input_form=[*FORM, {"paragraph": {"variable": "city"}}]),
        model_config(dataset_configs={"datasets": {"datasets": [
            {"dataset": {"enabled": True, "id": "00000000-0000-0000-0000-000000000001"}}]}}),
        model_config(model={"provider": "openai"}),
    ]
    for body in bad:
        answer = await node.client.post(path, headers=auth, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["code"] == "invalid_param"
    params = (await node.client.get("/v1/parameters", headers=key)).json()
    assert [next(iter(i.values()))["variable"] for i in params["user_input_form"]] == \
        ["city", "tone", "notes"]

    rival = await add_account_with_workspace(node, "rival@example.com")
    stolen = await node.client.post(path, headers=rival, json=model_config(pre_prompt="mine"))
    assert stolen.status_code == 404 and stolen.json()["code"] == "app_not_found"
    workflow = await node.client.post("/console/api/apps", headers=auth,
                                      json={"name": "Flow", "mode": "workflow"})
    refused = await node.client.post(
        f"/console/api/apps/{workflow.json()['id']}/model-config", headers=auth,
        json=model_config())
    assert refused.status_code == 400


async def test_site_settings(node: Node) -> None:
    auth = await node.setup_and_login()
    app_id, key = await app_with_key(node, auth)

    default = (await node.client.get("/v1/site", headers=key)).json()
    validate("WebAppSettingsResponse", default)
    assert default["title"] == "City guide" and default["icon"] == "🏙"

    changed = await node.client.post(f"/console/api/apps/{app_id}/site", headers=auth, json={
        "title": "Guide", "copyright": "2026 Eddy", "chat_color_theme": "#4A90D9",
        "input_placeholder": "Ask me anything", "use_icon_as_answer_icon": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Guide" and changed.json()["app_id"] == app_id
    again = await node.client.post(f"/console/api/apps/{app_id}/site", headers=auth,
                                   json={"privacy_policy": "https://example.com/p"})
    assert again.json()["title"] == "Guide"  # fields not sent keep their value

    site = (await node.client.get("/v1/site", headers=key)).json()
    validate("WebAppSettingsResponse", site)
    assert (site["title"], site["copyright"], site["chat_color_theme"],
            site["input_placeholder"], site["use_icon_as_answer_icon"],
            site["privacy_policy"]) == ("Guide", "2026 Eddy", "#4A90D9", "Ask me anything",
                                        True, "https://example.com/p")
    bad = await node.client.post(f"/console/api/apps/{app_id}/site", headers=auth,
                                 json={"title": ""})
    assert bad.status_code == 400
    console = (await node.client.get(f"/console/api/apps/{app_id}/site", headers=auth)).json()
    assert console["title"] == "Guide"
