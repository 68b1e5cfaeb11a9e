"""The draft a new workflow or advanced-chat app starts with, as Dify's editor creates it: a
start node alone (workflow), or start → llm → answer with the LLM's memory on the
conversation (advanced-chat). The model is left empty for the user to pick."""

from __future__ import annotations

from typing import Any

DEFAULT_FEATURES: dict[str, Any] = {
    "file_upload": {"enabled": False},
    "opening_statement": "",
    "retriever_resource": {"enabled": True},
    "sensitive_word_avoidance": {"enabled": False},
    "speech_to_text": {"enabled": False},
    "suggested_questions": [],
    "suggested_questions_after_answer": {"enabled": False},
    "text_to_speech": {"enabled": False, "language": "", "voice": ""},
}

_START = "start"


def _node(node_id: str, x: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": node_id, "type": "custom", "data": data, "position": {"x": x, "y": 282},
            "width": 244, "height": 90}


def _edge(source: str, source_type: str, target: str, target_type: str) -> dict[str, Any]:
    return {"id": f"{source}-source-{target}-target", "type": "custom", "source": source,
            "sourceHandle": "source", "target": target, "targetHandle": "target",
            "data": {"sourceType": source_type, "targetType": target_type}}


def default_graph(mode: str) -> dict[str, Any]:
    start = _node(_START, 80, {"type": "start", "title": "Start", "desc": "", "variables": []})
    if mode != "advanced-chat":
        return {"nodes": [start], "edges": []}
    llm = _node("llm", 380, {
        "type": "llm", "title": "LLM", "desc": "",
        "model": {"provider": "", "name": "", "mode": "chat",
                  "completion_params": {"temperature": 0.7}},
        "prompt_template": [{"role": "system", "text": ""}],
        "context": {"enabled": False, "variable_selector": []},
        "vision": {"enabled": False},
        "memory": {"window": {"enabled": False, "size": 10},
                   "query_prompt_template": "{{#sys.query#}}\n\n{{#sys.files#}}"},
    })
    answer = _node("answer", 680, {"type": "answer", "title": "Answer", "desc": "",
                                   "answer": "{{#llm.text#}}", "variables": []})
    return {"nodes": [start, llm, answer],
            "edges": [_edge(_START, "start", "llm", "llm"),
                      _edge("llm", "llm", "answer", "answer")]}
