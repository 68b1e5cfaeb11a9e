"""Audio (Service API): `POST /v1/audio-to-text` and `POST /v1/text-to-audio` through the
workspace's speech2text / tts model (an OpenAI-compatible `/audio/transcriptions` and
`/audio/speech`), when the app enables them; as Dify does, answered in the request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from adapters.llm.openai_protocol import ProviderError
from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.conversation.config import app_config
from gateway.deps import get_container, maybe_uuid
from gateway.nul_guard import refuse_nul_in_form
from gateway.platform.service import app_of_key
from gateway.uploads import read_limited
from projections.conversation import queries
from projections.platform.models import resolve_model
from schemas.conversation import api
from schemas.conversation.naming import end_user_id_for
from schemas.errors import (
    AudioTooLarge,
    BadRequest,
    CompletionRequestError,
    MessageNotFound,
    NoAudioUploaded,
    SpeechToTextDisabled,
    TooManyFiles,
    UnsupportedAudioType,
)

router = APIRouter(prefix="/v1")
AUDIO_LIMIT_MB = 30  # Dify's
AUDIO_TYPES = ("audio/mp3", "audio/m4a", "audio/wav", "audio/amr", "audio/mpga")


@router.post("/audio-to-text")
async def audio_to_text(request: Request, key: ApiKeyPrincipal = AppKey) -> dict[str, str]:
    c = get_container(request)
    app = await app_of_key(request, key)
    if not (await app_config(request, app)).speech_to_text.enabled:
        raise SpeechToTextDisabled()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > (AUDIO_LIMIT_MB + 1) * 1024 * 1024:
        raise AudioTooLarge()
    form = await request.form()
    refuse_nul_in_form(form)
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not files:
        raise NoAudioUploaded()
    if len(files) > 1:
        raise TooManyFiles()
    audio = files[0]
    if audio.content_type not in AUDIO_TYPES:
        raise UnsupportedAudioType(f"Audio type {audio.content_type} not allowed.")
    try:
        data = await read_limited(audio, AUDIO_LIMIT_MB)
    except Exception:
        raise AudioTooLarge() from None
    model = await resolve_model(c.engine, c.settings.SECRET_KEY, key.tenant_id, "speech2text")
    try:
        text = await model.client().transcribe(model.model, data, audio.filename or "audio",
                                               content_type=audio.content_type or "")
    except ProviderError as error:
        raise CompletionRequestError(error.message) from None
    return {"text": text}


@router.post("/text-to-audio")
async def text_to_audio(request: Request, body: api.TextToAudioRequest,
                        key: ApiKeyPrincipal = AppKey) -> Response:
    c = get_container(request)
    app = await app_of_key(request, key)
    config = await app_config(request, app)
    if not config.text_to_speech.enabled:
        raise BadRequest("TTS is not enabled")
    text = body.text
    if body.message_id:
        message: dict[str, Any] | None = None
        parsed = maybe_uuid(body.message_id)
        if parsed is not None:
            message = await queries.message(c.engine, app["id"], parsed)
        # An end user hears only their own messages (as feedback scopes them): another's
        # message is as unknown as a missing one.
        if message is None or message["end_user_id"] != end_user_id_for(app["id"], body.user):
            raise MessageNotFound()
        text = message["answer"]
    if not text:
        raise BadRequest("text is required")
    model = await resolve_model(c.engine, c.settings.SECRET_KEY, key.tenant_id, "tts")
    try:
        audio = await model.client().speech(model.model, text,
                                            voice=body.voice or config.text_to_speech.voice
                                            or "alloy")
    except ProviderError as error:
        raise CompletionRequestError(error.message) from None
    return Response(audio, media_type="audio/mpeg")
