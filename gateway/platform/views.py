"""Response shapes of the platform's console API (Dify's field names)."""

from __future__ import annotations

from typing import Any

from gateway.views import timestamp


def app_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "mode": row["mode"],
        "icon_type": row["icon_type"],
        "icon": row["icon"],
        "icon_background": row["icon_background"],
        "icon_url": row["icon"] if row["icon_type"] == "link" else None,
        "enable_site": True,
        "enable_api": True,
        "model_config": None,
        "workflow": None,
        "tracing": None,
        "use_icon_as_answer_icon": False,
        "tags": [],
        "author_name": row.get("author_name"),
        "created_by": str(row["created_by"]),
        "created_at": timestamp(row["created_at"]),
        "updated_by": str(row["updated_by"]) if row["updated_by"] else None,
        "updated_at": timestamp(row["updated_at"]),
    }


def api_key_view(row: dict[str, Any], token: str, last_used_at: int | None) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "type": row["type"],
        "token": token,
        "last_used_at": last_used_at,
        "created_at": timestamp(row["created_at"]),
    }


# --- workspaces and members (Dify's tenant_fields, tenants_fields, account_with_role_fields) --


def workspace_list_item(row: dict[str, Any], *, current: bool) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "plan": "sandbox",  # Dify's plan without billing
        "status": row["status"],
        "created_at": timestamp(row["created_at"]),
        "current": current,
    }


def tenant_view(row: dict[str, Any]) -> dict[str, Any]:
    """The workspace as its member `row["role"]` sees it."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "plan": "basic",  # a self-hosted tenant's plan in Dify
        "status": row["status"],
        "created_at": timestamp(row["created_at"]),
        "role": row["role"],
        "in_trial": True,
        "trial_end_reason": None,
        "custom_config": None,
    }


def member_view(row: dict[str, Any], mail: dict[str, Any] | None) -> dict[str, Any]:
    """Dify's member fields, and Eddy's `invitation_mail`: how the invitation's mail is doing
    (queued, sent, or failed with why; null for a member who was never mailed)."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "avatar": None,
        "avatar_url": None,
        "email": row["email"],
        "last_login_at": None,
        "last_active_at": None,
        "created_at": timestamp(row["created_at"]),
        "role": row["role"],
        "status": row["status"],
        "invitation_mail": None if mail is None else {
            "status": mail["status"], "error": mail["error"],
            "requested_at": timestamp(mail["requested_at"]),
            "sent_at": timestamp(mail["sent_at"])},
    }
