"""Workspace roles, Dify's names, and the groups of them Dify's permission checks use
(`TenantAccountRole` in Dify's api/models/account.py)."""

from __future__ import annotations

from typing import Literal

Role = Literal["owner", "admin", "editor", "normal", "dataset_operator"]
ROLES: tuple[Role, ...] = ("owner", "admin", "editor", "normal", "dataset_operator")

# Roles a member can be invited as or given (ownership moves only by transfer).
ASSIGNABLE: frozenset[str] = frozenset({"admin", "editor", "normal", "dataset_operator"})
# The workspace's owner alone.
OWNERS: frozenset[str] = frozenset({"owner"})
# Manage members and workspace settings (model providers).
ADMINS: frozenset[str] = frozenset({"owner", "admin"})
# Build apps: create, edit, publish, run drafts, manage their keys.
EDITORS: frozenset[str] = frozenset({"owner", "admin", "editor"})
# Build knowledge: datasets, documents, their keys.
DATASET_EDITORS: frozenset[str] = frozenset({"owner", "admin", "editor", "dataset_operator"})
# See the workspace's apps (a dataset operator reaches only knowledge).
APP_READERS: frozenset[str] = frozenset({"owner", "admin", "editor", "normal"})
EVERYONE: frozenset[str] = frozenset(ROLES)
