"""A workspace's keyring: ciphertexts name their key's generation; while a rotation
re-seals, both generations open; once the old one is retired, its ciphertexts do not."""

from __future__ import annotations

import pytest

from adapters.secrets import (
    Keyring,
    SecretUnreadable,
    generation_of,
    new_key_material,
    open_key_material,
    seal,
    seal_key_material,
)

KEY = "test-secret-key-which-is-long-enough-for-hs256"


def test_generation_zero_is_what_secrets_were_sealed_with_before() -> None:
    legacy = seal(KEY, "provider credentials w1", "sk-1")
    assert generation_of(legacy) == 0
    assert Keyring(KEY).unseal("provider credentials w1", legacy) == "sk-1"
    assert generation_of(Keyring(KEY).seal("p", "x")) == 0


def test_a_rotation_opens_both_generations_until_the_old_one_is_retired() -> None:
    material = new_key_material()
    sealed_material = seal_key_material(KEY, material)
    assert material not in sealed_material
    assert open_key_material(KEY, sealed_material) == material
    old = Keyring(KEY).seal("api token display", "app-token")

    rotating = Keyring(KEY, active=1, materials={1: material})
    new = rotating.seal("api token display", "app-token")
    assert new.startswith("k1:") and generation_of(new) == 1
    assert rotating.unseal("api token display", old) == "app-token"
    assert rotating.unseal("api token display", new) == "app-token"
    assert rotating.is_current(new) and not rotating.is_current(old)

    retired = Keyring(KEY, active=1, materials={1: material}, retired=frozenset({0}))
    assert retired.unseal("api token display", new) == "app-token"
    with pytest.raises(SecretUnreadable):
        retired.unseal("api token display", old)
    # the key is the workspace's own: SECRET_KEY alone does not open it, nor another key
    with pytest.raises(SecretUnreadable):
        Keyring(KEY).unseal("api token display", new)
    with pytest.raises(SecretUnreadable):
        Keyring(KEY, active=1, materials={1: new_key_material()}).unseal(
            "api token display", new)
    # each purpose has a key of its own
    with pytest.raises(SecretUnreadable):
        rotating.unseal("provider credentials w1", new)
