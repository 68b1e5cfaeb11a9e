"""Service API (/v1) per Dify's published spec: app info, parameters, meta."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.deps import get_container
from projections.platform import queries
from schemas.errors import Unauthorized

router = APIRouter(prefix="/v1")


async def _app(request: Request, key: ApiKeyPrincipal) -> dict[str, Any]:
    assert key.app_id is not None
    row = await queries.app_in_workspace(get_container(request).engine, key.tenant_id, key.app_id)
    if row is None:  # the app went away with its keys
        raise Unauthorized("Access token is invalid.")
    return row


@router.get("/info")
async def info(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await _app(request, key)
    return {
        "name": app["name"],
        "description": app["description"],
        "tags": [],
        "mode": app["mode"],
        "author_name": app["author_name"] or "",
    }


@router.get("/parameters")
async def parameters(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    await _app(request, key)
    # An app's model config arrives with a later issue; these are Dify's defaults.
    return {
        "opening_statement": "",
        "suggested_questions": [],
        "suggested_questions_after_answer": {"enabled": False},
        "speech_to_text": {"enabled": False},
        "text_to_speech": {"enabled": False, "voice": "", "language": "", "autoPlay": "disabled"},
        "retriever_resource": {"enabled": True},
        "annotation_reply": {"enabled": False},
        "more_like_this": {"enabled": False},
        "sensitive_word_avoidance": {"enabled": False},
        "user_input_form": [],
        "file_upload": {
            "image": {"enabled": False, "number_limits": 3, "detail": "high",
                      "transfer_methods": ["remote_url", "local_file"]},
        },
        "system_parameters": {
            "file_size_limit": 15,
            "image_file_size_limit": 10,
            "audio_file_size_limit": 50,
            "video_file_size_limit": 100,
            "workflow_file_upload_limit": 10,
        },
    }


@router.get("/meta")
async def meta(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    await _app(request, key)
    return {"tool_icons": {}}
