"""Symmetric sealing of secrets at rest (API tokens for display, model provider credentials).

Each purpose gets a key of its own derived from SECRET_KEY with HKDF, never the JWT
signing key itself; provider credentials use one key per workspace (the purpose names it),
so one workspace's ciphertext does not open under another's key.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretUnreadable(Exception):
    """The ciphertext does not open with this key (another SECRET_KEY, another workspace,
    or tampered with)."""


@functools.lru_cache(maxsize=256)
def _cipher(secret_key: str, purpose: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=f"eddy: {purpose}".encode()).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: str, purpose: str, plaintext: str) -> str:
    return _cipher(secret_key, purpose).encrypt(plaintext.encode()).decode()


def unseal(secret_key: str, purpose: str, ciphertext: str) -> str:
    try:
        return _cipher(secret_key, purpose).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(purpose) from exc
