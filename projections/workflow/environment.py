"""A workflow's environment variables with their secret values opened: what a run's
`env.*` variables hold and what an export with `include_secret` writes. Everywhere else
(commands, events, read models) secret values stay sealed with the workspace's purpose."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from adapters.secrets import Keyring
from schemas.workflow.naming import SECRET_VALUE_TYPE, environment_secret_purpose


def unsealed_environment(keyring: Keyring, tenant_id: UUID | None,
                         variables: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The variables as declared, each secret with its plain value ("" when none was set;
    SecretUnreadable when sealed under another SECRET_KEY or workspace, or a retired key)."""
    purpose = environment_secret_purpose(tenant_id)
    return [{**v, "value": keyring.unseal(purpose, v["value"]) if v.get("value") else ""}
            if v.get("value_type") == SECRET_VALUE_TYPE else dict(v) for v in variables]
