"""A domain's database: typed tables of immutable rows, copy-on-write forks, a canonical digest.

A domain declares its tables as frozen dataclasses, one :class:`Table` each with the
field that keys its rows::

    @dataclass(frozen=True)
    class Patient:
        patient_id: str
        name: str
        allergies: tuple[str, ...] = ()

    TABLES = (Table("patients", Patient, key="patient_id"),)

Rows are never changed in place: a write puts a new row (``dataclasses.replace``) in
place of the old. That is what makes a :class:`Database` cheap to fork and snapshot:
a fork shares every table with its parent, and a table is copied (one shallow dict copy,
rows shared) only when one of them first writes to it after the split. A 10 MB database
forks in microseconds; a fork's first write to its largest table costs one dict copy of
that table (see ``bench/bench_tools.py``).

:meth:`Database.digest` is a canonical hash of the observable state: per table, the sum
modulo 2**256 of the sha256 of every row (its table, key and values as canonical JSON),
hashed together in table order. The sum is order-free, so two databases with equal rows
have equal digests whatever their history, and a write updates it by the rows it
changes: once computed, a digest costs what was written since, not the database's size.
Equality that decides a reward does not rest on a hash: :meth:`Database.same_as`
compares rows (tables still shared by two forks compare by identity, for free).

A database file is JSON Lines, one row a line: ``{"table": "patients", "row": {...}}``.
Loading checks every row against its table's dataclass (field names, types, the key's
uniqueness) and raises :class:`~pivotgym.errors.DataError` naming the file, the line and
the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pivotgym.core import jsonl
from pivotgym.errors import DataError

Row = Any  # an instance of a table's frozen dataclass
_ABSENT = object()
_MODULUS = 1 << 256


@dataclass(frozen=True)
class Table:
    """One table: its name, the frozen dataclass of its rows, and the key field."""

    name: str
    row_type: type
    key: str

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.row_type):
            raise TypeError(f"table {self.name}: {self.row_type!r} is not a dataclass")
        if not self.row_type.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"table {self.name}: rows must be frozen dataclasses")
        if self.key not in {f.name for f in dataclasses.fields(self.row_type)}:
            raise TypeError(f"table {self.name}: no key field {self.key!r}")

    def key_of(self, row: Row) -> str:
        return getattr(row, self.key)


class Schema:
    """The tables of a domain, by name and by row type."""

    def __init__(self, tables: Sequence[Table]) -> None:
        self.tables = {t.name: t for t in tables}
        self.by_type = {t.row_type: t for t in tables}
        self._hints = {t.name: typing.get_type_hints(t.row_type) for t in tables}
        self._fields = {t.name: [f.name for f in dataclasses.fields(t.row_type)] for t in tables}
        # Fields declared float: 2500 and 2500.0 are one value (as == says), one hash.
        self._floats = {
            t.name: {n for n, h in self._hints[t.name].items() if h is float} for t in tables
        }

    def row_hash(self, table: str, key: str, row: Row) -> int:
        """A 256-bit hash of one row: its table, key and field values as canonical JSON."""
        floats = self._floats[table]
        values = [
            float(v) if name in floats and isinstance(v, int) else v
            for name in self._fields[table]
            for v in (getattr(row, name),)
        ]
        text = json.dumps([table, key, values], separators=(",", ":"), ensure_ascii=False)
        return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")

    def table_of(self, row: Row) -> Table:
        table = self.by_type.get(type(row))
        if table is None:
            raise TypeError(f"{type(row).__name__} is not a row type of this schema")
        return table

    def row_from_json(self, table_name: str, data: Any, where: str = "row") -> Row:
        """A row of ``table_name`` from its JSON object; ``ValueError`` names the field."""
        if table_name not in self.tables:
            raise _FieldError("table", f"unknown table {table_name!r} "
                              f"(tables: {', '.join(self.tables)})")  # fmt: skip
        table = self.tables[table_name]
        if not isinstance(data, dict):
            raise _FieldError(where, f"must be an object, not {type(data).__name__}")
        hints = self._hints[table_name]
        fields = {f.name: f for f in dataclasses.fields(table.row_type)}
        extra = sorted(set(data) - set(fields))
        if extra:
            raise _FieldError(f"{where}.{extra[0]}", f"not a field of {table_name}")
        values = {}
        for name, f in fields.items():
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise _FieldError(f"{where}.{name}", "missing")
                continue
            values[name] = convert(data[name], hints[name], f"{where}.{name}")
        return table.row_type(**values)


class _FieldError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``hint``: lists become tuples, so rows stay immutable."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(value, option, where)
            except _FieldError as exc:
                problems.append(exc.problem)
        raise _FieldError(where, " or ".join(problems))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            allowed = ", ".join(repr(a) for a in typing.get_args(hint))
            raise _FieldError(where, f"must be one of {allowed}, not {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise _FieldError(where, f"must be a list, not {type(value).__name__}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return tuple(convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise _FieldError(where, f"must be a boolean, not {type(value).__name__}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(where, f"must be an integer, not {type(value).__name__}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _FieldError(where, f"must be a number, not {type(value).__name__}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _FieldError(where, f"must be a string, not {type(value).__name__}")
        return value
    raise TypeError(f"{where}: unsupported field type {hint!r}")


def to_json(value: Any) -> Any:
    """A row, a list of rows or a plain value as JSON-ready data (tuples become lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def canonical(value: Any) -> str:
    return json.dumps(to_json(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Database:
    """Tables of immutable rows with copy-on-write sharing between forks (module docstring)."""

    def __init__(
        self,
        schema: Schema,
        tables: Mapping[str, dict[str, Row]] | None = None,
        sums: Mapping[str, int] | None = None,
    ) -> None:
        self.schema = schema
        if tables is None:
            self._tables: dict[str, dict[str, Row]] = {name: {} for name in schema.tables}
            self._owned = set(schema.tables)
        else:
            self._tables = {name: tables.get(name, {}) for name in schema.tables}
            # Tables this database may write in place; every other one is shared.
            self._owned = set()
        # Per table, the sum of its row hashes (module docstring), kept up to date by writes.
        self._sums: dict[str, int] = dict(sums or {})
        self.writes = 0
        self._journal: list[tuple[str, str, Row]] | None = None

    # ------------------------------------------------------------------- reading

    def get(self, table: str, key: str) -> Row | None:
        return self._tables[table].get(key)

    def rows(self, table: str) -> Iterator[Row]:
        """The rows of ``table`` in key order of insertion (a generator: do not write while
        iterating)."""
        return iter(self._tables[table].values())

    def where(self, table: str, **equal: Any) -> list[Row]:
        """Rows of ``table`` whose named fields equal the given values."""
        return [
            row
            for row in self._tables[table].values()
            if all(getattr(row, k) == v for k, v in equal.items())
        ]

    def count(self, table: str) -> int:
        return len(self._tables[table])

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    # ------------------------------------------------------------------- writing

    def _set(self, table: str, key: str, row: Row) -> None:
        """Put ``row`` (or, ``_ABSENT``, nothing) at ``key``, keeping the digest sum."""
        if table not in self._owned:
            self._tables[table] = dict(self._tables[table])
            self._owned.add(table)
        rows = self._tables[table]
        old = rows.get(key, _ABSENT)
        if table in self._sums:
            total = self._sums[table]
            if old is not _ABSENT:
                total -= self.schema.row_hash(table, key, old)
            if row is not _ABSENT:
                total += self.schema.row_hash(table, key, row)
            self._sums[table] = total % _MODULUS
        if row is _ABSENT:
            rows.pop(key, None)
        else:
            rows[key] = row

    def _write(self, table: str, key: str, row: Row) -> None:
        if self._journal is not None:
            self._journal.append((table, key, self._tables[table].get(key, _ABSENT)))
        self.writes += 1
        self._set(table, key, row)

    def put(self, row: Row) -> Row:
        """Insert ``row``, or replace the row with its key; returns it."""
        table = self.schema.table_of(row)
        self._write(table.name, table.key_of(row), row)
        return row

    def insert(self, row: Row) -> Row:
        """Insert a new row; ``KeyError`` when its key is taken."""
        table = self.schema.table_of(row)
        if table.key_of(row) in self._tables[table.name]:
            raise KeyError(f"{table.name} already holds {table.key_of(row)!r}")
        return self.put(row)

    def update(self, table: str, key: str, **changes: Any) -> Row:
        """Replace row ``key`` of ``table`` by a copy with ``changes``; returns the new row."""
        row = self._tables[table].get(key)
        if row is None:
            raise KeyError(f"{table} has no row {key!r}")
        return self.put(dataclasses.replace(row, **changes))

    def delete(self, table: str, key: str) -> Row:
        if key not in self._tables[table]:
            raise KeyError(f"{table} has no row {key!r}")
        row = self._tables[table][key]
        self._write(table, key, _ABSENT)
        return row

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside are undone when the block raises (they are kept otherwise)."""
        outer, self._journal = self._journal, []
        try:
            yield
        except BaseException:
            for table, key, old in reversed(self._journal):
                self._set(table, key, old)
            raise
        finally:
            if outer is not None:
                outer.extend(self._journal)
            self._journal = outer

    # --------------------------------------------------------------- sharing

    def freeze(self) -> DatabaseSnapshot:
        """An immutable view of the current state; later writes copy what they touch."""
        self._owned.clear()
        return DatabaseSnapshot(self.schema, dict(self._tables), dict(self._sums))

    def fork(self) -> Database:
        """An independent database in the same state, sharing every table until written."""
        self._owned.clear()
        return Database(self.schema, dict(self._tables), self._sums)

    # ---------------------------------------------------------------- digest

    def _sum(self, table: str) -> int:
        total = self._sums.get(table)
        if total is None:
            row_hash = self.schema.row_hash
            total = sum(row_hash(table, k, r) for k, r in self._tables[table].items())
            total = self._sums[table] = total % _MODULUS
        return total

    def digest(self) -> str:
        """A canonical hash of every row of every table (see the module docstring)."""
        h = hashlib.sha256(b"pivotgym-db-v1")
        for table in sorted(self._tables):
            h.update(f"{table}:{self._sum(table):064x};".encode())
        return h.hexdigest()

    def same_as(self, other: Database) -> bool:
        """Whether both hold exactly the same rows (exact, not by digest)."""
        return all(
            mine is theirs or mine == theirs
            for mine, theirs in zip(self._tables.values(), other._tables.values(), strict=True)
        )

    def diff(self, other: Database) -> dict[str, dict[str, list[str]]]:
        """Keys added, removed and changed per table from ``self`` to ``other``."""
        out: dict[str, dict[str, list[str]]] = {}
        for name in self._tables:
            if self._tables[name] is other._tables[name]:
                continue
            mine, theirs = self._tables[name], other._tables[name]
            change = {
                "added": sorted(set(theirs) - set(mine)),
                "removed": sorted(set(mine) - set(theirs)),
                "changed": sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k]),
            }
            out[name] = {k: v for k, v in change.items() if v}
        return out

    def to_rows(self) -> Iterator[tuple[str, Row]]:
        for name, rows in self._tables.items():
            for row in rows.values():
                yield name, row


@dataclass(frozen=True)
class DatabaseSnapshot:
    """A database state that nothing can change; :meth:`thaw` gives a writable copy."""

    schema: Schema
    tables: Mapping[str, dict[str, Row]]
    sums: Mapping[str, int]

    def thaw(self) -> Database:
        return Database(self.schema, dict(self.tables), self.sums)


def build(schema: Schema, rows: Iterable[Row]) -> Database:
    """A database of ``rows``; ``DataError`` on a duplicate key."""
    db = Database(schema)
    for row in rows:
        try:
            db.insert(row)
        except KeyError as exc:
            raise DataError(f"duplicate key: {exc.args[0]}") from None
    return db


def load(schema: Schema, path: str | Path) -> Database:
    """A database from a JSON Lines file (module docstring); errors name file, line, field."""
    path = Path(path)
    db = Database(schema)
    for lineno, text in jsonl.numbered_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", file=path, line=lineno) from None
        if not isinstance(record, dict) or not isinstance(record.get("table"), str):
            raise DataError('expected {"table": name, "row": {...}}', file=path, line=lineno,
                            field="table")  # fmt: skip
        try:
            row = schema.row_from_json(record["table"], record.get("row"))
        except _FieldError as exc:
            raise DataError(exc.problem, file=path, line=lineno, field=exc.field) from None
        try:
            db.insert(row)
        except KeyError as exc:
            key = schema.tables[record["table"]].key
            raise DataError(f"duplicate key ({exc.args[0]})", file=path, line=lineno,
                            field=f"row.{key}") from None  # fmt: skip
    return db


def dump(db: Database, path: str | Path) -> None:
    """Write ``db`` as a JSON Lines file that :func:`load` reads back to the same digest."""
    with open(path, "w", encoding="utf-8") as fh:
        for table, row in db.to_rows():
            fh.write(json.dumps({"table": table, "row": to_json(row)}, ensure_ascii=False) + "\n")
