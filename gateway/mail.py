"""Secrets a mail carries (codes, activation tokens), sealed here, where SECRET_KEY is:
commands and events carry them only sealed; the mail processor opens them to render."""

from __future__ import annotations

from typing import Any

import orjson

from adapters.secrets import seal
from schemas.mail.naming import MAIL_PARAMS_PURPOSE


def seal_mail_params(secret_key: str, params: dict[str, Any]) -> str:
    return seal(secret_key, MAIL_PARAMS_PURPOSE, orjson.dumps(params).decode())
