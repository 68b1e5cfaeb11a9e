"""The rebuild fold's statement runner (`projections/sqlite_fold.py`) against SQLAlchemy's
`Connection.execute`: the same statements, in the same order, on two SQLite databases must
leave the same rows and return the same results, for every shape the runner takes over
(values from parameters, values the statement holds, column defaults, IN lists of each
length, executemany, RETURNING, scalars) and for those it leaves to SQLAlchemy.

(The fold of a whole history through the projectors is pinned by
tests/unit/test_projection_versions.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    bindparam,
    create_engine,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import StaticPool

from projections.sqlite_fold import SQLiteFoldConnection, run_at_once

metadata = MetaData()
items = Table(
    "items", metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String, nullable=False),
    Column("count", Integer, nullable=False, default=0),
    Column("done", Boolean, nullable=False, default=False),
    Column("tags", JSON, nullable=False, default=list),
    Column("at", DateTime, nullable=True),
    # a default reading the statement's other values (from the execution context)
    Column("label", String, nullable=False, default=lambda context: (
        context.current_parameters["name"] + "!")),
)

IDS = [UUID(int=n) for n in range(1, 9)]
AT = datetime(2026, 3, 1, 12, 30, 15, 250, tzinfo=UTC)
_ONE = select(items.c.name).where(items.c.id == bindparam("id"))
_SOME = select(items.c.id, items.c.count).where(items.c.id.in_(bindparam("ids", expanding=True)))
_RENAME = (update(items).where(items.c.id == bindparam("item"))
           .returning(items.c.name, items.c.count))


def _statements(round_: int) -> list[tuple[Any, Any]]:
    """(statement, parameters) in order: a small history touching every shape (each round
    on items of its own)."""
    ids = [UUID(int=round_ * 100 + n) for n in range(1, 9)]
    rows = [{"id": i, "name": f"item {n}", "at": AT} for n, i in enumerate(ids)]
    upsert = sqlite_insert(items)
    return [
        (insert(items), rows[:5]),  # executemany, defaults (scalar and callable)
        (insert(items), [rows[5]]),  # a list of one: a single execution
        (insert(items).values(id=ids[6], name="literal", count=7, tags=["a"]), None),
        (insert(items), {**rows[7], "tags": {"k": [1, 2]}, "done": True}),
        (_ONE, {"id": ids[2]}),
        (_SOME, {"ids": ids[:3]}),
        (_SOME, {"ids": ids[2:7]}),
        (_SOME, {"ids": []}),
        (_SOME, {"ids": [ids[0]]}),
        (update(items).where(items.c.id == ids[1]).values(count=items.c.count + 5), None),
        (update(items).where(items.c.id == ids[2]).values(count=items.c.count + 6), None),
        (_RENAME.values(name="renamed"), {"item": ids[3]}),
        (_RENAME.values(name="again", at=None), {"item": ids[4]}),
        (upsert.values(id=ids[0], name="x").on_conflict_do_update(
            index_elements=[items.c.id], set_={"count": items.c.count + 1}), None),
        (select(items.c.id).where(items.c.tags.is_not(None), items.c.done.is_(True)), None),
        (select(func.sum(items.c.count), func.count()).where(items.c.name != ""), None),
        (text("UPDATE items SET count = count + 1 WHERE name LIKE :p"), {"p": "item%"}),
        (delete(items).where(items.c.id.in_([ids[5], ids[6]])), None),
        (delete(items).where(items.c.id == bindparam("id")), {"id": uuid4()}),
        (select(items).order_by(items.c.id), None),
    ]


def _database() -> tuple[Any, Connection]:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    conn = engine.connect()
    metadata.create_all(conn)
    return engine, conn


def _outcome(result: Any) -> Any:
    """What a projector may read of a result: its rows (as tuples and mappings), or how
    many rows a statement without any changed."""
    if not hasattr(result, "all") or not getattr(result, "returns_rows", True):
        return ("changed", result.rowcount)
    rows = result.all()
    return [(tuple(r), dict(r._mapping)) for r in rows]


def _run(execute: Callable[[Any, Any], Any], round_: int) -> list[Any]:
    return [_outcome(execute(statement, parameters))
            for statement, parameters in _statements(round_)]


def test_the_fold_runner_gives_what_sqlalchemy_gives() -> None:
    plain_engine, plain = _database()
    fold_engine, sqlite = _database()
    try:
        runner = SQLiteFoldConnection(sqlite)
        expected = _run(plain.execute, 1)
        seen = _run(runner.run, 1)
        # again: each shape now compiled and worked out, values still this call's own
        expected += _run(plain.execute, 2)
        seen += _run(runner.run, 2)

        assert seen == expected
        everything = select(items).order_by(items.c.id)
        assert sqlite.execute(everything).all() == plain.execute(everything).all()
        assert len(plain.execute(everything).all()) == 12
    finally:
        sqlite.close()
        plain.close()
        fold_engine.dispose()
        plain_engine.dispose()


def test_scalar_results_and_a_projector_run_at_once() -> None:
    engine, sqlite = _database()
    try:
        runner = SQLiteFoldConnection(sqlite)
        runner.run(insert(items), [{"id": i, "name": f"n{n}"} for n, i in enumerate(IDS)])

        async def projector() -> None:
            found = await runner.execute(_SOME, {"ids": IDS[:4]})
            assert set(found.scalars()) == set(IDS[:4])
            assert await runner.scalar(_ONE, {"id": IDS[5]}) == "n5"
            changed = await runner.execute(_RENAME.values(name="r"), {"item": IDS[6]})
            assert changed.one() == ("r", 0)

        run_at_once(projector())
    finally:
        sqlite.close()
        engine.dispose()
