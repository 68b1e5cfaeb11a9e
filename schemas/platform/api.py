"""Request bodies of the platform's HTTP API (console), validated at the edge."""

from __future__ import annotations

import re
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from schemas.base import Body
from schemas.platform.commands import AppMode

# Dify's rule (`email` in api/libs/helper.py): a plain pattern, no deliverability or
# special-use-domain checks, so self-hosted addresses such as admin@corp.local pass.
_EMAIL = re.compile(r"[\w.!#$%&'*+\-/=?^_`{|}~]+@([\w-]+\.)+[\w-]{2,}")


def is_email(value: str) -> bool:
    return _EMAIL.fullmatch(value) is not None


def _dify_email(value: str) -> str:
    if not is_email(value):
        raise PydanticCustomError("value_error", "{email} is not a valid email.",
                                  {"email": value})
    return value


Email = Annotated[str, Field(max_length=255), AfterValidator(_dify_email)]


# Dify's rule for passwords (`password_pattern` in api/libs/password.py): letters and digits,
# at least 8 characters.
PASSWORD_PATTERN = r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$"


def _strong_enough(value: str) -> str:
    if not re.fullmatch(PASSWORD_PATTERN, value):
        raise ValueError("Password must contain letters and numbers")
    return value


Password = Annotated[str, Field(min_length=8, max_length=256), AfterValidator(_strong_enough)]

# The interface languages Dify offers (api/constants/languages.py); others become en-US.
LANGUAGES = ("en-US", "zh-Hans", "zh-Hant", "pt-BR", "es-ES", "fr-FR", "de-DE", "ja-JP",
             "ko-KR", "ru-RU", "it-IT", "uk-UA", "vi-VN", "pl-PL", "ro-RO", "tr-TR", "fa-IR",
             "sl-SI", "th-TH", "id-ID", "ar-TN", "hi-IN")


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


# --- workspaces and members --------------------------------------------------------------------


class SwitchWorkspaceRequest(Body):
    tenant_id: str = Field(min_length=1, max_length=64)


class InviteMembersRequest(Body):
    emails: list[Email] = Field(default_factory=list, max_length=100)
    role: str = Field(max_length=32)
    language: str | None = Field(default=None, max_length=32)

    @field_validator("language")
    @classmethod
    def _offered_or_english(cls, value: str | None) -> str:
        # Dify's get_valid_language: an unknown language is not an error, it is en-US.
        return value if value in LANGUAGES else "en-US"


class UpdateMemberRoleRequest(Body):
    role: str = Field(max_length=32)


class ActivateRequest(Body):
    workspace_id: str | None = Field(default=None, max_length=64)
    email: Email | None = None
    token: str = Field(min_length=1, max_length=255)
    name: str = Field(min_length=1, max_length=30)
    interface_language: str
    timezone: str = Field(max_length=64)
    # Not in Dify's form (its invitees set one later): here an invitee may choose it now.
    password: Password | None = None

    @field_validator("interface_language")
    @classmethod
    def _offered_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"{value} is not a valid language.")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError(f"{value} is not a valid timezone.")
        return value


class OwnerTransferMailRequest(Body):
    language: str | None = Field(default=None, max_length=32)


class OwnerTransferCheckRequest(Body):
    code: str = Field(min_length=1, max_length=32)
    token: str = Field(min_length=1, max_length=255)


class OwnerTransferRequest(Body):
    token: str = Field(min_length=1, max_length=255)
