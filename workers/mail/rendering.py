"""Mails as rendered from their templates (`templates/<template>.<language>.{html,txt}`,
Jinja2; a language without its own files gets en-US's, as Dify does), with Dify's subjects.

What each template is given (params and sealed params together; `to` and
`application_title` always):

| template | params |
|---|---|
| invite_member | inviter_name, workspace_name; url (sealed: an activation link holds a token) |
| reset_password, email_code_login, change_email | sealed: code |
| owner_transfer_confirm | WorkspaceName; sealed: code |
| owner_transfer_old_notify | WorkspaceName, NewOwnerEmail |
| owner_transfer_new_notify | WorkspaceName |
| queue_monitor_alert | queue_name, pending_tasks_count, alert_time |

Mails with a code also take `expiry_minutes` (how long the code works; 5 if not given).
A param a template needs and the mail lacks fails the rendering (a dead letter naming it),
instead of sending a mail with a hole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import jinja2

from schemas.mail.events import MailTemplate

APPLICATION_TITLE = "Dify"
DEFAULT_LANGUAGE = "en-US"
LANGUAGES = ("en-US", "zh-Hans")
TEMPLATES = Path(__file__).parent / "templates"

# Dify's subjects (api/libs/email_i18n.py), by template and language
SUBJECTS: dict[MailTemplate, dict[str, str]] = {
    "invite_member": {"en-US": "Join {{ application_title }} Workspace Now",
                      "zh-Hans": "立即加入 {{ application_title }} 工作空间"},
    "reset_password": {"en-US": "Set Your {{ application_title }} Password",
                       "zh-Hans": "设置您的 {{ application_title }} 密码"},
    "email_code_login": {"en-US": "{{ application_title }} Login Code",
                         "zh-Hans": "{{ application_title }} 登录验证码"},
    "owner_transfer_confirm": {
        "en-US": "Verify Your Request to Transfer Workspace Ownership",
        "zh-Hans": "验证您转移工作空间所有权的请求"},
    "owner_transfer_old_notify": {"en-US": "Workspace ownership has been transferred",
                                  "zh-Hans": "工作区所有权已转移"},
    "owner_transfer_new_notify": {"en-US": "You are now the owner of {{ WorkspaceName }}",
                                  "zh-Hans": "您现在是 {{ WorkspaceName }} 的所有者"},
    "change_email": {"en-US": "Confirm your new email address",
                     "zh-Hans": "确认您的邮箱地址变更"},
    "queue_monitor_alert": {
        "en-US": "Alert: Dataset Queue pending tasks exceeded the limit",
        "zh-Hans": "警报：数据集队列待处理任务超过限制"},  # noqa: RUF001 (Dify's)
}
assert set(SUBJECTS) == set(get_args(MailTemplate)), "a subject for every MailTemplate"


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    html: str
    text: str


def _environment(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                              undefined=jinja2.StrictUndefined, autoescape=autoescape,
                              keep_trailing_newline=True)


_HTML, _TEXT = _environment(autoescape=True), _environment(autoescape=False)


def mail_language(language: str) -> str:
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def render_mail(template: MailTemplate, language: str, to: str,
                params: dict[str, Any]) -> RenderedMail:
    """`params`: the mail's params with its sealed ones opened."""
    lang = mail_language(language)
    context = {**params, "to": to, "application_title": APPLICATION_TITLE}
    return RenderedMail(
        subject=_TEXT.from_string(SUBJECTS[template][lang]).render(context),
        html=_HTML.get_template(f"{template}.{lang}.html").render(context),
        text=_TEXT.get_template(f"{template}.{lang}.txt").render(context))
