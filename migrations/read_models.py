"""For migrations that change read-model tables (migrations 0001-0008 wrote `console_v1.`
directly; from 0009 on a read model may have several versions, see
projections/versions.py).

    for schema in read_model_schemas(op.get_bind(), "console"):
        op.execute(f"ALTER TABLE {schema}.apps ADD COLUMN ...")

changes every version that exists, so the active one, the one kept for rollback and one a
rebuild is filling all get it. (A change only new versions should get is declared as a
layout instead, `projections/layout.py`, and shipped by `eddy projections rebuild`.)
"""

from __future__ import annotations

from sqlalchemy import Connection, text


def read_model_schemas(bind: Connection, projection: str) -> list[str]:
    return list(bind.execute(text(
        "SELECT schema_name FROM projection_versions WHERE projection = :p ORDER BY version"),
        {"p": projection}).scalars())
