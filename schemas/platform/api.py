"""Request bodies of the platform's HTTP API (console), validated at the edge."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from schemas.base import Body
from schemas.platform.commands import AppMode

# Dify's rule (`email` in api/libs/helper.py): a plain pattern, no deliverability or
# special-use-domain checks, so self-hosted addresses such as admin@corp.local pass.
_EMAIL = re.compile(r"[\w.!#$%&'*+\-/=?^_`{|}~]+@([\w-]+\.)+[\w-]{2,}")


def _dify_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise PydanticCustomError("value_error", "{email} is not a valid email.",
                                  {"email": value})
    return value


Email = Annotated[str, Field(max_length=255), AfterValidator(_dify_email)]


def _strong_enough(value: str) -> str:
    # Dify's rule (`valid_password`): letters and digits, at least 8 characters.
    if not (any(c.isalpha() for c in value) and any(c.isdigit() for c in value)):
        raise ValueError("Password must contain letters and numbers")
    return value


Password = Annotated[str, Field(min_length=8, max_length=256), AfterValidator(_strong_enough)]


class SetupRequest(Body):
    email: Email
    name: str = Field(min_length=1, max_length=30)
    password: Password
    language: str = "en-US"


class LoginRequest(Body):
    email: Email
    password: str = Field(min_length=1, max_length=256)
    remember_me: bool = False


class RefreshTokenRequest(Body):
    refresh_token: str = Field(min_length=1)


class CodeMailRequest(Body):
    """Mail me a code: forgot password, e-mail code login."""

    email: Email
    language: str | None = Field(default=None, max_length=32)


class CodeCheckRequest(Body):
    """The mailed code with the token its request answered."""

    email: str = Field(min_length=1, max_length=255)
    code: str = Field(min_length=1, max_length=32)
    token: str = Field(min_length=1, max_length=255)
    language: str | None = Field(default=None, max_length=32)


class PasswordResetRequest(Body):
    token: str = Field(min_length=1, max_length=255)
    new_password: Password
    password_confirm: Password


class ChangePasswordRequest(Body):
    password: str | None = Field(default=None, max_length=256)  # none set yet: None
    new_password: Password
    repeat_new_password: str = Field(min_length=1, max_length=256)


class CreateAppRequest(Body):
    name: str = Field(min_length=1, max_length=255)
    mode: AppMode
    description: str = Field(default="", max_length=400)
    icon_type: str = Field(default="emoji", pattern="^(emoji|image|link)$")
    icon: str = Field(default="🤖", max_length=255)
    icon_background: str = Field(default="#FFEAD5", max_length=32)


class UpdateAppRequest(Body):
    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=400)
    icon_type: str | None = Field(default=None, pattern="^(emoji|image|link)$")
    icon: str | None = Field(default=None, max_length=255)
    icon_background: str | None = Field(default=None, max_length=32)
