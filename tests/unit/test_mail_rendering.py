"""Every mail template renders in Dify's languages (HTML and text, Dify's subjects), with
what its params say; an unknown language gets en-US; a missing param fails the rendering
instead of sending a mail with a hole."""

from __future__ import annotations

from typing import Any, get_args

import jinja2
import pytest

from schemas.mail.events import MailTemplate
from workers.mail.rendering import LANGUAGES, render_mail

# per template: its params (as the asking handler gives them, sealed ones opened) and a
# value each language's text must show
PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "invite_member": ({"inviter_name": "Owner", "workspace_name": "Acme",
                       "url": "http://console.test/activate?token=tok-1"},
                      'http://console.test/activate?token=tok-1'),
    "reset_password": ({"code": "384756"}, "384756"),
    "email_code_login": ({"code": "129384"}, "129384"),
    "change_email": ({"code": "555123"}, "555123"),
    "owner_transfer_confirm": ({"code": "777001", "WorkspaceName": "Acme"}, "777001"),
    "owner_transfer_old_notify": ({"WorkspaceName": "Acme", "NewOwnerEmail": "bob@x.test"},
                                  "bob@x.test"),
    "owner_transfer_new_notify": ({"WorkspaceName": "Acme"}, "Acme"),
    "queue_monitor_alert": ({"queue_name": "dataset", "pending_tasks_count": 412,
                             "alert_time": "2026-01-01 09:00:00"}, "412"),
}
SUBJECTS_EN = {"invite_member": "Join Dify Workspace Now",
               "reset_password": "Set Your Dify Password",
               "email_code_login": "Dify Login Code",
               "owner_transfer_new_notify": "You are now the owner of Acme"}


def test_every_template_has_example_params() -> None:
    assert set(PARAMS) == set(get_args(MailTemplate))


@pytest.mark.parametrize("template", sorted(PARAMS))
def test_each_template_renders_in_each_language(template: MailTemplate) -> None:
    params, shown = PARAMS[template]
    rendered = {lang: render_mail(template, lang, "ann@example.com", params) for lang in LANGUAGES}
    for mail in rendered.values():
        assert shown in mail.text and shown in mail.html
        assert mail.html.lstrip().startswith("<!DOCTYPE html>") and "{{" not in mail.html
        assert mail.subject and "{{" not in mail.subject and "{{" not in mail.text
    english, chinese = rendered["en-US"], rendered["zh-Hans"]
    assert english.subject != chinese.subject and english.text != chinese.text
    if template in SUBJECTS_EN:
        assert english.subject == SUBJECTS_EN[template]


def test_an_unknown_language_gets_english() -> None:
    params, _ = PARAMS["reset_password"]
    assert (render_mail("reset_password", "ja-JP", "a@x.test", params)
            == render_mail("reset_password", "en-US", "a@x.test", params))


def test_code_mails_say_how_long_the_code_works() -> None:
    mail = render_mail("email_code_login", "en-US", "a@x.test",
                       {"code": "1", "expiry_minutes": 10})
    assert "10 minutes" in mail.text and "5 minutes" not in mail.text
    assert "5 minutes" in render_mail("email_code_login", "en-US", "a@x.test",
                                      {"code": "1"}).text


def test_html_escapes_what_users_typed() -> None:
    params = {**PARAMS["invite_member"][0], "workspace_name": "<script>x</script>"}
    mail = render_mail("invite_member", "en-US", "a@x.test", params)
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert "<script>x</script>" in mail.text  # plain text is not HTML


def test_a_missing_param_fails_the_rendering() -> None:
    with pytest.raises(jinja2.UndefinedError, match="code"):
        render_mail("reset_password", "en-US", "a@x.test", {})
