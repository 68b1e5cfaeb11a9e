"""Ids of the platform context derived from natural keys, shared by the write and read side."""

from __future__ import annotations

from uuid import UUID, uuid5

from schemas.base import EDDY_NAMESPACE

SETUP_ID = uuid5(EDDY_NAMESPACE, "setup")


def account_id_for(email: str) -> UUID:
    """One account per e-mail: the id is derived from it, so the store enforces uniqueness."""
    return uuid5(EDDY_NAMESPACE, "account:" + email.strip().lower())
