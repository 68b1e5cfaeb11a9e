"""What projectors use of an AsyncConnection, for a rebuild's fold into SQLite in memory:
the projectors' own SQLAlchemy Core statements, each shape compiled once and run straight
on the sqlite3 cursor.

The fold runs every event of the store through the projectors (`projections/rebuild.py`),
one statement or two per event. Through `Connection.execute`, each of them paid more for
SQLAlchemy's execution context and cursor result than SQLite took to run it. Here a
statement is compiled with SQLAlchemy's own cache key and compiler (so its SQL and its
parameters' conversions are exactly those `Connection.execute` would use), and what is
kept per shape (its SQL, its parameters' order and bind processors, its columns' result
processors) runs each execution without an execution context. Shapes this does not cover
(plain text, insert defaults computed by SQL, RETURNING of several rows' parameters) go
through `Connection.execute` as before, on the same sqlite3 connection.

Every awaited call completes at once, so the fold needs no event loop round trip
(`run_at_once` drives a projector's coroutine).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.sql.compiler import WARN_LINTING, SQLCompiler

_CompileKey = tuple[Any, ...]


@dataclass(frozen=True)
class _Shape:
    """One compiled statement shape, as the sqlite3 cursor runs it."""

    compiled: SQLCompiler
    sql: str
    positions: Sequence[str]  # bind names in the order of the SQL's `?`
    processors: Mapping[str, Callable[[Any], Any]]
    expanding: bool  # IN lists rendered per execution
    # (parameter key, default's value or callable) of columns the statement's parameters
    # leave out, as SQLAlchemy's execution context fills them in
    defaults: tuple[tuple[str, Any, bool], ...]
    rows: SimpleResultMetaData | None  # None: the statement returns no rows


class _Written:
    """The result of a statement that returns no rows: how many it changed."""

    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class _Rows(IteratorResult[Any]):
    rowcount: int


class _DefaultContext:
    """What a column default's callable may read, as from SQLAlchemy's execution context."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.current_parameters = parameters


class SQLiteFoldConnection:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.raw = conn.connection.driver_connection
        self._compiled: dict[_CompileKey, Any] = {}  # SQLAlchemy's compiled cache, ours
        self._shapes: dict[int, _Shape | None] = {}  # by id of the compiled statement

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.run(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return self.run(statement, parameters).scalar()

    def get_execution_options(self) -> Any:
        return self.conn.get_execution_options()

    def run(self, statement: Any, parameters: Any = None) -> Any:
        many = isinstance(parameters, list) and len(parameters) > 1
        if isinstance(parameters, list):
            parameters = parameters if many else (parameters[0] if parameters else None)
        keys = sorted(parameters[0] if many else parameters or ())
        compile_w_cache = getattr(statement, "_compile_w_cache", None)
        if compile_w_cache is None:
            return self.conn.execute(statement, parameters)
        compiled, extracted, collected, cached = compile_w_cache(
            self.dialect, compiled_cache=self._compiled, column_keys=keys,
            for_executemany=many, linting=self.dialect.compiler_linting | WARN_LINTING)
        if cached not in (CacheStats.CACHE_HIT, CacheStats.CACHE_MISS):
            return self.conn.execute(statement, parameters)  # not cacheable: compiled anew
        # (the compiled statement is kept in `_compiled`, so its id names it)
        shape = self._shapes.get(id(compiled), False)
        if shape is False:
            shape = self._shapes[id(compiled)] = _shape_of(compiled, many)
        if shape is None:
            return self.conn.execute(statement, parameters)
        cursor = self.raw.cursor()
        if many:
            cursor.executemany(shape.sql, [
                _positional(shape, shape.positions, shape.processors, _bound(
                    shape, one, extracted, collected)) for one in parameters])
            return _Written(cursor.rowcount)
        bound = _bound(shape, parameters, extracted, collected)
        sql, positions, processors = shape.sql, shape.positions, shape.processors
        if shape.expanding:
            expanded = shape.compiled._process_parameters_for_postcompile(bound)
            sql, positions = expanded.statement, expanded.positiontup or ()
            processors = {**processors, **expanded.processors}
            bound = expanded.parameters
        cursor.execute(sql, _positional(shape, positions, processors, bound))
        if shape.rows is None:
            return _Written(cursor.rowcount)
        result = _Rows(shape.rows, iter(cursor.fetchall()))
        result.rowcount = cursor.rowcount
        return result


def _shape_of(compiled: SQLCompiler, many: bool) -> _Shape | None:
    """What runs the compiled statement on the cursor, or None for a shape left to
    `Connection.execute`."""
    if (compiled.isplaintext or not compiled.positional or compiled.schema_translate_map
            or compiled.implicit_returning or compiled._insertmanyvalues
            or compiled._ad_hoc_textual or compiled._textual_ordered_columns):
        return None
    returns_rows = bool(compiled._result_columns)
    if many and (returns_rows or compiled.literal_execute_params
                 or compiled.post_compile_params):
        return None
    defaults: list[tuple[str, Any, bool]] = []
    prefetch = compiled.insert_prefetch or compiled.update_prefetch
    for column in prefetch:
        arg, is_scalar, is_callable, is_sentinel = (
            column._default_description_tuple if compiled.insert_prefetch
            else column._onupdate_description_tuple)
        if is_sentinel or not (is_scalar or is_callable):
            return None  # a SQL expression or sequence: SQLAlchemy's context runs it
        defaults.append((compiled._within_exec_param_key_getter(column), arg, is_callable))
    rows = None
    if returns_rows:
        columns = compiled._result_columns
        rows = SimpleResultMetaData(
            [c.keyname for c in columns], extra=[c.objects for c in columns],
            _processors=[c.type._cached_result_processor(compiled.dialect, None)
                         for c in columns])
    return _Shape(compiled, compiled.string, tuple(compiled.positiontup or ()),
                  compiled._bind_processors,  # type: ignore[arg-type]
                  bool(compiled.literal_execute_params or compiled.post_compile_params),
                  tuple(defaults), rows)


def _bound(shape: _Shape, parameters: Mapping[str, Any] | None, extracted: Any,
           collected: Any) -> dict[str, Any]:
    """The statement's parameters by bind name, its columns' defaults filled in."""
    bound = shape.compiled.construct_params(
        parameters, extracted_parameters=extracted, escape_names=False,
        _collected_params=collected)
    if shape.defaults:
        context = _DefaultContext(bound)
        for key, arg, is_callable in shape.defaults:
            bound[key] = arg(context) if is_callable else arg
    return bound


def _positional(shape: _Shape, positions: Sequence[str],
                processors: Mapping[str, Callable[[Any], Any]],
                bound: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(processors[key](bound[key]) if key in processors else bound[key]
                 for key in positions)


def run_at_once(step: Coroutine[Any, Any, Any]) -> None:
    """Runs a projector's coroutine on `SQLiteFoldConnection` (it never suspends)."""
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("a projector awaited something other than its connection")
