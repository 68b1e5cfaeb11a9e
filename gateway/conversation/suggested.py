"""Suggested questions after an answer (`GET /v1/messages/{id}/suggested`): as Dify does, a
short model call on the conversation's last turns, answered directly (nothing recorded)."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from adapters.llm.openai_protocol import ProviderError
from gateway.auth import ApiKeyPrincipal, AppKey
from gateway.conversation.config import app_config
from gateway.conversation.conversations import chat_app
from gateway.conversation.messages import model_for
from gateway.deps import get_container, parse_id
from projections.conversation import queries
from schemas.conversation.naming import end_user_id_for
from schemas.errors import MessageNotFound, SuggestedQuestionsDisabled

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1")
TURNS = 3
# Dify's SUGGESTED_QUESTIONS_AFTER_ANSWER_INSTRUCTION_PROMPT
INSTRUCTION = (
    "Please help me predict the three most likely questions that human would ask, and "
    "keeping each question under 20 characters.\nMAKE SURE your output is the SAME language "
    "as the Assistant's latest response. The output must be an array in JSON format "
    'following the specified schema:\n["question1","question2","question3"]\n')


@router.get("/messages/{message_id}/suggested")
async def suggested(request: Request, message_id: str,
                    user: Annotated[str, Query(min_length=1, max_length=255)],
                    key: ApiKeyPrincipal = AppKey) -> dict[str, Any]:
    app = await chat_app(request, key)
    config = await app_config(request, app)
    if not config.suggested_questions_after_answer.enabled:
        raise SuggestedQuestionsDisabled()
    engine = get_container(request).engine
    message = await queries.message(engine, app["id"], parse_id(message_id, MessageNotFound))
    if message is None or message["end_user_id"] != end_user_id_for(app["id"], user):
        raise MessageNotFound()
    history = await queries.conversation_messages(engine, message["conversation_id"],
                                                  first_id=None, limit=TURNS)
    turns = "\n".join(f"Human: {m['query']}\nAssistant: {m['answer']}"
                      for m in (history.items if history else []) if m["answer"])
    model = await model_for(request, key.tenant_id, config)
    try:
        answer = await model.client().chat(model.model, [
            {"role": "user", "content": f"{turns}\n\n{INSTRUCTION}"}], max_tokens=256,
            temperature=0)
        questions = json.loads(answer.content[answer.content.index("["):
                                              answer.content.rindex("]") + 1])
    except (ProviderError, ValueError) as error:
        # As Dify: suggestions are a nicety; a failing model yields none.
        log.warning("suggested questions failed", extra={"error": repr(error)[:300]})
        return {"result": "success", "data": []}
    return {"result": "success", "data": [str(q) for q in questions][:3]}
