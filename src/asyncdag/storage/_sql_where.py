"""The WHERE clauses of ``list_runs`` and ``list_ticks``, written once for SQLite and PostgreSQL.

Both stores filter on the same columns with the same comparisons (``since``
inclusive and ``until`` exclusive, a root run matching itself and its chain,
``before`` exclusive), so a filter added to one cannot be forgotten in the
other: the clause is built here, and only the placeholder differs (``?`` for
sqlite3, ``%s`` for psycopg).  ORDER BY and LIMIT stay with each store, as how
NULLs sort and what "no limit" is belong to the dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from asyncdag._events import RunStatus
from asyncdag.storage._automation import TickStatus

__all__ = ["runs_where", "ticks_where"]


def _as_is(value: str) -> Any:
    return value


def runs_where(
    mark: str,
    *,
    pipeline_name: str | None,
    root_run_id: str | None,
    statuses: Collection[RunStatus] | None,
    since: float | None,
    until: float | None,
    text: Callable[[str], Any] = _as_is,
) -> tuple[str, list[Any]]:
    """``" WHERE ..."`` for ``list_runs`` ('' when nothing filters), and its parameters.

    ``mark`` is the driver's placeholder; ``text`` binds an identifier as the store
    keeps it (SQLite stores text UTF-8 cannot encode as bytes).  Call it with a
    non-empty ``statuses`` or None: ``IN ()`` is no SQL.
    """
    clauses: list[tuple[str, list[Any]]] = []
    if pipeline_name is not None:
        clauses.append(("pipeline_name = ?", [text(pipeline_name)]))
    if root_run_id is not None:
        clauses.append(("(root_run_id = ? OR run_id = ?)", [text(root_run_id)] * 2))
    if statuses is not None:
        clauses.append(_in("status", [s.value for s in statuses]))
    if since is not None:
        clauses.append(("start_time >= ?", [since]))
    if until is not None:
        clauses.append(("start_time < ?", [until]))
    return _where(mark, clauses)


def ticks_where(
    mark: str, *, name: str, before: float | None, statuses: Collection[TickStatus] | None
) -> tuple[str, list[Any]]:
    """``" WHERE ..."`` for ``list_ticks`` of the instigator ``name``, and its parameters.

    As :func:`runs_where`: a non-empty ``statuses`` or None.
    """
    clauses: list[tuple[str, list[Any]]] = [("instigator_name = ?", [name])]
    if before is not None:
        clauses.append(("tick_time < ?", [before]))
    if statuses is not None:
        clauses.append(_in("status", [s.value for s in statuses]))
    return _where(mark, clauses)


def _in(column: str, values: list[Any]) -> tuple[str, list[Any]]:
    return f"{column} IN ({','.join('?' * len(values))})", values


def _where(mark: str, clauses: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    if not clauses:
        return "", []
    sql = " WHERE " + " AND ".join(clause for clause, _ in clauses)
    return sql.replace("?", mark), [value for _, values in clauses for value in values]
