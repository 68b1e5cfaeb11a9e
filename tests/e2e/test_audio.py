"""Audio over HTTP: text-to-audio and audio-to-text through the workspace's tts and
speech2text models (the fake provider's /audio/speech and /audio/transcriptions), when the
app enables them; Dify's errors otherwise."""

from __future__ import annotations

from tests.chat import KEY, PROVIDERS, Chat
from tests.harness import eventually


async def connect(chat: Chat, model: str, model_type: str) -> None:
    saved = await chat.node.client.post(
        f"{PROVIDERS}/openai_api_compatible/models", headers=chat.auth, json={
            "model": model, "model_type": model_type, "credentials": {
                "api_key": KEY, "endpoint_url": chat.provider.base_url}})
    assert saved.status_code == 200, saved.text


async def test_text_to_audio_and_back(chat: Chat) -> None:
    n = chat.node
    off = await n.client.post("/v1/text-to-audio", headers=chat.key,
                              json={"text": "Hello", "user": "ann"})
    assert off.status_code == 400 and off.json()["message"] == "TTS is not enabled"
    audio_file = {"file": ("hello.wav", b"RIFF....", "audio/wav")}
    stt_off = await n.client.post("/v1/audio-to-text", headers=chat.key, files=audio_file,
                                  data={"user": "ann"})
    assert (stt_off.status_code, stt_off.json()["code"]) == (400, "speech_to_text_disabled")

    await chat.configure(text_to_speech={"enabled": True, "voice": "nova"},
                         speech_to_text={"enabled": True})
    missing = await n.client.post("/v1/text-to-audio", headers=chat.key,
                                  json={"text": "Hello", "user": "ann"})
    assert (missing.status_code, missing.json()["code"]) == (400, "provider_not_initialize")

    await connect(chat, "tts-1", "tts")
    await connect(chat, "whisper-1", "speech2text")
    spoken = await n.client.post("/v1/text-to-audio", headers=chat.key,
                                 json={"text": "Welcome to Oslo", "user": "ann"})
    assert spoken.status_code == 200, spoken.text
    assert spoken.headers["content-type"] == "audio/mpeg" and spoken.content
    speech = chat.provider.requests_to("/audio/speech")[-1].body
    assert (speech["model"], speech["input"], speech["voice"]) == (
        "tts-1", "Welcome to Oslo", "nova")

    heard = await n.client.post("/v1/audio-to-text", headers=chat.key, data={"user": "ann"},
                                files={"file": ("welcome.mp3", spoken.content, "audio/mp3")})
    assert heard.status_code == 200, heard.text
    assert heard.json() == {"text": "Welcome to Oslo"}
    wrong = await n.client.post("/v1/audio-to-text", headers=chat.key, data={"user": "ann"},
                                files={"file": ("a.mpeg", b"x", "audio/mpeg")})
    assert (wrong.status_code, wrong.json()["code"]) == (415, "unsupported_audio_type")
    empty = await n.client.post("/v1/audio-to-text", headers=chat.key, data={"user": "ann"})
    assert (empty.status_code, empty.json()["code"]) == (400, "no_audio_uploaded")

    # a message's answer read aloud
    answer = (await chat.send("Say something")).json()

    async def read_aloud() -> bool:  # once the answer is in the read model
        r = await n.client.post("/v1/text-to-audio", headers=chat.key, json={
            "message_id": answer["message_id"], "user": "ann"})
        return r.status_code == 200

    await eventually(read_aloud)
    assert chat.provider.requests_to("/audio/speech")[-1].body["input"] == answer["answer"]

    # another end user of the app cannot have ann's answer read to them: as with feedback,
    # her message is unknown to him, and nothing reaches the provider
    spoken_before = len(chat.provider.requests_to("/audio/speech"))
    foreign = await n.client.post("/v1/text-to-audio", headers=chat.key, json={
        "message_id": answer["message_id"], "user": "bob"})
    assert (foreign.status_code, foreign.json()["code"]) == (404, "not_found")
    assert len(chat.provider.requests_to("/audio/speech")) == spoken_before
