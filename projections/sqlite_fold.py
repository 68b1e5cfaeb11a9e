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
(plain text, defaults computed by SQL, literal-execute or tuple IN parameters, executemany
with RETURNING or IN lists, statements without a cache key) go through
`Connection.execute` as before, on the same sqlite3 connection.

It reads SQLAlchemy's compiled objects' internals (`_compile_w_cache`, `_bind_processors`,
`_cache_key_bind_match`, ...), as pinned in requirements.lock: tests/unit/test_sqlite_fold.py
runs it against `Connection.execute` statement by statement, and fails on an upgrade that
changes them.

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


# One `?` of a statement: the bind name, the index into its list for an element of an
# expanded IN list (None otherwise), and its type's bind processor.
_Bind = tuple[str, int | None, Callable[[Any], Any] | None]


@dataclass(frozen=True)
class _Shape:
    """One compiled statement shape, as the sqlite3 cursor runs it."""

    compiled: SQLCompiler
    sql: str
    binds: tuple[_Bind, ...]
    # Expanding IN lists' bind names: the SQL is SQLAlchemy's for each count of values,
    # kept per counts (`_expanded`); () for a statement without one.
    expanding: tuple[str, ...]
    # (parameter key, default's value or callable) of columns the statement's parameters
    # leave out, as SQLAlchemy's execution context fills them in
    defaults: tuple[tuple[str, Any, bool], ...]
    rows: SimpleResultMetaData | None  # None: the statement returns no rows


# Where each `?` of a statement without IN lists takes its value from, when SQLAlchemy's
# construct_params is not needed: the parameters by key (_PARAMETER), a value the statement
# holds (_HELD: index into its cache key's bound parameters, as extracted per execution), or
# a column's default (_DEFAULT: a value; _CALLED: a callable taking no context).
_PARAMETER, _HELD, _DEFAULT, _CALLED = range(4)
_Source = tuple[int, Any, Callable[[Any], Any] | None]


class _Written:
    """The result of a statement that returns no rows: how many it changed."""

    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class _Rows(IteratorResult[Any]):
    rowcount: int


class _Columns(SimpleResultMetaData):
    """A shape's result columns, shared by its results: its `scalars()` metadata is made
    once, not per result."""

    def _reduce(self, keys: Sequence[Any]) -> Any:
        reduced = self.__dict__.setdefault("_reduced", {})
        key = tuple(keys)
        if key not in reduced:
            reduced[key] = super()._reduce(keys)
        return reduced[key]


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
        # by id of the compiled statement (kept in `_compiled`, so its id names it)
        self._shapes: dict[int, _Shape | None] = {}
        self._expanded: dict[tuple[int, tuple[int, ...]], tuple[str, tuple[_Bind, ...]]] = {}
        # by id of the compiled statement, whose parameters' keys are part of its cache key
        self._sources: dict[int, tuple[_Source, ...] | None] = {}

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
        shape = self._shapes.get(id(compiled), False)
        if shape is False:
            shape = self._shapes[id(compiled)] = _shape_of(compiled, many)
        if shape is None:
            return self.conn.execute(statement, parameters)
        cursor = self.raw.cursor()
        sources = self._sources.get(id(compiled), False)
        if sources is False:
            sources = self._sources[id(compiled)] = _sources_of(
                shape, parameters[0] if many else parameters or {}, collected)
        if many:
            cursor.executemany(shape.sql, [
                _values(sources, one, extracted) if sources is not None
                else _positional(shape.binds, _bound(shape, one, extracted, collected))
                for one in parameters])
            return _Written(cursor.rowcount)
        if sources is not None:
            cursor.execute(shape.sql, _values(sources, parameters or {}, extracted))
        else:
            bound = _bound(shape, parameters, extracted, collected)
            sql, binds = (self._expand(shape, bound) if shape.expanding
                          else (shape.sql, shape.binds))
            cursor.execute(sql, _positional(binds, bound))
        if shape.rows is None:
            return _Written(cursor.rowcount)
        result = _Rows(shape.rows, iter(cursor.fetchall()))
        result.rowcount = cursor.rowcount
        return result

    def _expand(self, shape: _Shape, bound: dict[str, Any]) -> tuple[str, tuple[_Bind, ...]]:
        """The SQL and `?`s of a statement with IN lists for these lists' lengths: as
        SQLAlchemy expands it, the first time for each."""
        key = (id(shape.compiled), tuple(len(bound[name]) for name in shape.expanding))
        found = self._expanded.get(key)
        if found is None:
            expanded = shape.compiled._process_parameters_for_postcompile(dict(bound))
            element = {element: (name, index)
                       for name, elements in expanded.parameter_expansion.items()
                       for index, element in enumerate(elements)}
            processors = {**shape.compiled._bind_processors, **expanded.processors}
            found = self._expanded[key] = (expanded.statement, tuple(
                (*element.get(position, (position, None)), processors.get(position))
                for position in expanded.positiontup or ()))
        return found


def _shape_of(compiled: SQLCompiler, many: bool) -> _Shape | None:
    """What runs the compiled statement on the cursor, or None for a shape left to
    `Connection.execute`."""
    if (compiled.isplaintext or not compiled.positional or compiled.schema_translate_map
            or compiled.implicit_returning or compiled._insertmanyvalues
            or compiled._ad_hoc_textual or compiled._textual_ordered_columns
            or compiled.literal_execute_params):
        return None
    expanding = tuple(compiled.bind_names[p] for p in compiled.post_compile_params)
    if any(p.type._is_tuple_type or not p.expanding for p in compiled.post_compile_params):
        return None  # tuples' IN lists are flattened: left to SQLAlchemy
    returns_rows = bool(compiled._result_columns)
    if many and (returns_rows or expanding):
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
        rows = _Columns(
            [c.keyname for c in columns], extra=[c.objects for c in columns],
            _processors=[c.type._cached_result_processor(compiled.dialect, None)
                         for c in columns])
    processors = compiled._bind_processors
    return _Shape(compiled, compiled.string,
                  tuple((key, None, processors.get(key))  # type: ignore[misc]
                        for key in compiled.positiontup or ()),
                  expanding, tuple(defaults), rows)


def _sources_of(shape: _Shape, parameters: Mapping[str, Any], collected: Any
                ) -> tuple[_Source, ...] | None:
    """Where each `?` takes its value from, as construct_params would find it; None where
    construct_params is needed (IN lists, values it computes, a value missing)."""
    compiled = shape.compiled
    if shape.expanding or collected or compiled.cache_key is None:
        return None
    held: dict[Any, int] = {}
    if compiled._cache_key_bind_match is not None:
        matched, _ = compiled._cache_key_bind_match
        held = {bind: index for index, original in enumerate(compiled.cache_key[1])
                for bind in matched.get(original, ())}
    defaults = {key: (arg, is_callable) for key, arg, is_callable in shape.defaults}
    sources: list[_Source] = []
    for name, _, process in shape.binds:
        bind = compiled.binds[name]
        if bind.key in parameters:
            sources.append((_PARAMETER, bind.key, process))
        elif name in parameters:
            sources.append((_PARAMETER, name, process))
        elif name in defaults:
            arg, is_callable = defaults[name]
            if is_callable and not hasattr(arg, "__wrapped__"):
                return None  # it reads the execution context
            sources.append((_CALLED if is_callable else _DEFAULT, arg, process))
        elif bind in held and not bind.required and not bind.callable:
            sources.append((_HELD, held[bind], process))
        else:
            return None
    return tuple(sources)


def _values(sources: tuple[_Source, ...], parameters: Mapping[str, Any],
            extracted: Sequence[Any]) -> tuple[Any, ...]:
    """The values for the SQL's `?`s, each through its type's bind processor."""
    values = []
    for kind, ref, process in sources:
        if kind == _PARAMETER:
            value = parameters[ref]
        elif kind == _HELD:
            value = extracted[ref].value
        elif kind == _DEFAULT:
            value = ref
        else:
            value = ref(None)  # a callable taking no context, wrapped by SQLAlchemy
        values.append(value if process is None else process(value))
    return tuple(values)


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


def _positional(binds: tuple[_Bind, ...], bound: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values for the SQL's `?`s, each through its type's bind processor."""
    values = [bound[name] if index is None else bound[name][index]
              for name, index, _ in binds]
    return tuple([value if process is None else process(value)
                  for value, (_, _, process) in zip(values, binds, strict=True)])


def run_at_once(step: Coroutine[Any, Any, Any]) -> None:
    """Runs a projector's coroutine on `SQLiteFoldConnection` (it never suspends)."""
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("a projector awaited something other than its connection")
