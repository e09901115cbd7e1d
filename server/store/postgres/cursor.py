"""A psycopg cursor that takes the shared store modules' SQL (DuckDB placeholders) unchanged.

The shared modules (miners, jobs, event rows; see server/store/sql.py) write `?` for positional
parameters, `$1`, `$2` for numbered ones and `$name` for named ones; psycopg wants `%s` and
`%(name)s`. Only placeholders are rewritten, never the statement: a statement that needs PostgreSQL's
own syntax lives in this package. None of the shared statements contains `%` or `?`/`$` in a literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

_NUMBERED = re.compile(r"\$(\d+)")
_NAMED = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def translate(query: str, parameters: Any) -> tuple[str, Any]:
    """(psycopg query, parameters) for a DuckDB-style query and its parameters."""
    query = query.replace("%", "%%")
    if parameters is None:
        return query, None
    if isinstance(parameters, Mapping):
        return _NAMED.sub(r"%(\1)s", query), dict(parameters)
    values = list(parameters)
    if _NUMBERED.search(query):
        named = {f"p{i + 1}": v for i, v in enumerate(values)}
        return _NUMBERED.sub(r"%(p\1)s", query), named
    return query.replace("?", "%s"), values


class PgCursor:
    """SqlCursor over a psycopg cursor (see server/store/sql.py)."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.raw = cur

    def execute(self, query: str, parameters: Any = None) -> PgCursor:
        sql, params = translate(query, parameters)
        self.raw.execute(sql, params)  # type: ignore[call-overload]  # runtime-built SQL
        return self

    def executemany(self, query: str, parameters: Any = None) -> PgCursor:
        rows: Sequence[Any] = list(parameters or [])
        if rows:
            sql, _ = translate(query, rows[0])
            self.raw.executemany(sql, [translate(query, r)[1] for r in rows])  # type: ignore[call-overload]
        return self

    def fetchall(self) -> list[Any]:
        return self.raw.fetchall() if self.raw.description is not None else []

    def fetchone(self) -> Any:
        return self.raw.fetchone() if self.raw.description is not None else None

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount

    def register(self, view_name: str, python_object: Any) -> PgCursor:
        """DuckDB's register for a dict of numpy columns: a temporary table (dropped at the end of
        the transaction) filled by binary COPY."""
        columns: dict[str, np.ndarray] = {name: np.asarray(c) for name, c in python_object.items()}
        types = {name: _pg_type(c) for name, c in columns.items()}
        self.unregister(view_name)
        self.raw.execute(
            sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                sql.Identifier(view_name),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in types.items()
                ),
            )
        )
        values = [_python_values(c) for c in columns.values()]
        with self.raw.copy(
            sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(view_name))
        ) as copy:
            copy.set_types(list(types.values()))
            for row in zip(*values, strict=True):
                copy.write_row(row)
        return self

    def unregister(self, view_name: str) -> PgCursor:
        self.raw.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(sql.Identifier(view_name)))
        return self


def _pg_type(column: np.ndarray) -> str:
    kind = column.dtype.kind
    if kind == "M":
        return "timestamp"
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "bigint"
    if kind == "f":
        return "float8"
    return "text"


def _python_values(column: np.ndarray) -> list[Any]:
    """Python values for COPY: datetimes from datetime64, None for NaN."""
    if column.dtype.kind == "M":
        return column.astype("datetime64[us]").tolist()
    values = column.tolist()
    if column.dtype.kind == "f":
        return [None if v != v else v for v in values]
    return values
