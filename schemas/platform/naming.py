"""Ids of the platform context derived from natural keys, shared by the write and read side,
and the derived forms of an API token that both sides agree on."""

from __future__ import annotations

import hashlib
from uuid import UUID, uuid5

from schemas.base import EDDY_NAMESPACE

SETUP_ID = uuid5(EDDY_NAMESPACE, "setup")


def account_id_for(email: str) -> UUID:
    """One account per e-mail: the id is derived from it, so the store enforces uniqueness."""
    return uuid5(EDDY_NAMESPACE, "account:" + email.strip().lower())


def api_token_hash(token: str) -> str:
    """What an API key is looked up by. Tokens are long random strings, so a plain sha256
    cannot be reversed by guessing (no salt needed) and stays indexable. Migration 0004
    computes the same in SQL: sha256 of the UTF-8 bytes, lowercase hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_hint(token: str) -> str:
    """A token's prefix and last four characters ("app-...x9Zq"), safe to show anywhere.
    Migration 0004 computes the same in SQL (keep them in step)."""
    return f"{token[:token.find('-') + 1]}...{token[-4:]}"
