"""Symmetric sealing of secrets at rest (API tokens for display, model provider credentials,
workflow secret environment variables).

Each purpose gets a key of its own derived with HKDF, never the JWT signing key itself.
A workspace's secrets are sealed with its `Keyring`: generation 0 derives from SECRET_KEY
and the purpose (what every secret was sealed with before workspaces had keys of their own);
`eddy reset-encrypt-key-pair` gives the workspace a random key of the next generation
(kept sealed under SECRET_KEY beside the store), re-seals every secret with it and retires
the old one. A ciphertext names its generation (`k<n>:` before the Fernet token; none is
generation 0), so both open while the secrets are being re-sealed.
"""

from __future__ import annotations

import base64
import functools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_KEY_MATERIAL_PURPOSE = "workspace key"  # what seals a workspace's key under SECRET_KEY


class SecretUnreadable(Exception):
    """The ciphertext does not open with this key (another SECRET_KEY, another workspace,
    a retired key, or tampered with)."""


@functools.lru_cache(maxsize=256)
def _cipher(key_material: str, purpose: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=f"eddy: {purpose}".encode()).derive(key_material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: str, purpose: str, plaintext: str) -> str:
    return _cipher(secret_key, purpose).encrypt(plaintext.encode()).decode()


def unseal(secret_key: str, purpose: str, ciphertext: str) -> str:
    try:
        return _cipher(secret_key, purpose).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(purpose) from exc


def new_key_material() -> str:
    return secrets.token_urlsafe(32)


def seal_key_material(secret_key: str, material: str) -> str:
    return seal(secret_key, _KEY_MATERIAL_PURPOSE, material)


def open_key_material(secret_key: str, sealed: str) -> str:
    return unseal(secret_key, _KEY_MATERIAL_PURPOSE, sealed)


def generation_of(ciphertext: str) -> int:
    """The key generation a ciphertext was sealed with (Fernet tokens never hold ':')."""
    prefix, colon, _ = ciphertext.partition(":")
    if colon and prefix.startswith("k") and prefix[1:].isdigit():
        return int(prefix[1:])
    return 0


@dataclass(frozen=True)
class Keyring:
    """A workspace's keys as stored: new secrets are sealed with the `active` generation;
    a ciphertext of any generation in `materials` (or of generation 0 while it is not
    retired) opens. `materials`: generation (1 and up) -> its key."""

    secret_key: str = field(repr=False)
    active: int = 0
    materials: Mapping[int, str] = field(default_factory=dict, repr=False)
    retired: frozenset[int] = frozenset()

    def _material(self, generation: int) -> str:
        if generation in self.retired:
            raise SecretUnreadable(f"key generation {generation} is retired")
        if generation == 0:
            return self.secret_key
        if generation not in self.materials:
            raise SecretUnreadable(f"no key of generation {generation}")
        return self.materials[generation]

    def seal(self, purpose: str, plaintext: str) -> str:
        token = seal(self._material(self.active), purpose, plaintext)
        return token if self.active == 0 else f"k{self.active}:{token}"

    def unseal(self, purpose: str, ciphertext: str) -> str:
        generation = generation_of(ciphertext)
        token = ciphertext.partition(":")[2] if generation else ciphertext
        return unseal(self._material(generation), purpose, token)

    def is_current(self, ciphertext: str) -> bool:
        """Sealed with the active key: nothing to re-seal."""
        return generation_of(ciphertext) == self.active
