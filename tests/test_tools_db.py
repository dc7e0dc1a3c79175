"""The tool env's database and toolkit: copy-on-write forks, digests, atomic calls, schemas."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pivotgym.envs.tools import db as dbmod
from pivotgym.envs.tools.db import Database, Schema, Table, build
from pivotgym.envs.tools.domains import clinic
from pivotgym.envs.tools.toolkit import ToolError, Toolkit
from pivotgym.errors import DataError


@dataclass(frozen=True)
class Item:
    item_id: str
    count: int
    tags: tuple[str, ...] = ()


SCHEMA = Schema([Table("items", Item, key="item_id")])


def _db(n: int = 5) -> Database:
    return build(SCHEMA, (Item(f"i{k}", k) for k in range(n)))


def test_a_fork_shares_until_written_and_never_sees_the_other_side() -> None:
    parent = _db()
    before = parent.digest()
    child = parent.fork()
    child.update("items", "i1", count=100)
    parent.delete("items", "i2")
    assert parent.get("items", "i1").count == 1 and child.get("items", "i2") is not None
    assert child.get("items", "i1").count == 100
    assert parent.digest() != before != child.digest()
    frozen = child.freeze()
    child.update("items", "i1", count=7)
    assert frozen.thaw().get("items", "i1").count == 100  # a snapshot never moves


def test_the_digest_depends_on_the_rows_not_on_their_history() -> None:
    a, b = _db(), _db()
    a.digest()  # cached sums are updated by writes, not recomputed
    a.insert(Item("x", 1))
    a.update("items", "x", count=2)
    a.delete("items", "x")
    a.update("items", "i0", count=9)
    a.update("items", "i0", count=0)
    assert a.digest() == b.digest() and a.same_as(b)
    b.update("items", "i3", tags=("t",))
    assert a.digest() != b.digest() and not a.same_as(b)
    assert set(a.diff(b)["items"]["changed"]) == {"i3"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "delete"]), st.integers(0, 6),
                          st.integers(0, 3)), max_size=25))  # fmt: skip
def test_incremental_digests_equal_a_fresh_computation(ops) -> None:
    db = _db()
    db.digest()
    for op, k, value in ops:
        if op == "put":
            db.put(Item(f"i{k}", value))
        elif db.get("items", f"i{k}") is not None:
            db.delete("items", f"i{k}")
    fresh = build(SCHEMA, list(db.rows("items")))
    assert db.digest() == fresh.digest()


def test_a_failed_call_leaves_the_database_as_it_was() -> None:
    tools = Toolkit()

    @tools.write
    def move(db: Database, item_id: str, to: str) -> Item:
        """Move an item to a new key.

        item_id: the item
        to: the new key
        """
        row = db.delete("items", item_id)
        if db.get("items", to) is not None:
            raise ToolError(f"{to} is taken")
        return db.insert(Item(to, row.count))

    db = _db()
    digest = db.digest()
    outcome = tools.call(db, "move", {"item_id": "i1", "to": "i2"})
    assert outcome.content == "Error: i2 is taken" and outcome.error == "tool_error"
    assert db.digest() == digest and db.get("items", "i1") is not None
    assert tools.call(db, "move", {"item_id": "i1", "to": "z"}).error is None
    assert db.get("items", "i1") is None and db.get("items", "z").count == 1


def test_wrong_argument_types_are_answered_naming_the_argument() -> None:
    db = clinic.DOMAIN.database()
    toolkit = clinic.DOMAIN.toolkit
    bad = toolkit.call(db, "find_open_slots", {"doctor_id": ["D01"]})
    assert bad.error == "invalid_arguments" and "argument 'doctor_id'" in bad.content
    missing = toolkit.call(db, "get_patient", {})
    assert missing.content.startswith("Error:") and "patient_id" in missing.content
    extra = toolkit.call(db, "get_patient", {"patient_id": "P1001", "who": "me"})
    assert "argument 'who'" in extra.content
    enum = toolkit.call(db, "pay_invoice", {"invoice_id": "I5001", "method": "cash"})
    assert "argument 'method'" in enum.content
    assert toolkit.call(db, "nope", {}).content.startswith("Error: unknown tool 'nope'")


def test_schemas_come_from_signatures_and_docstrings() -> None:
    schema = clinic.DOMAIN.toolkit["find_open_slots"].schema["function"]
    params = schema["parameters"]
    assert schema["description"] == "List a doctor's available slots, optionally on one date only."
    assert params["required"] == ["doctor_id"] and params["additionalProperties"] is False
    assert params["properties"]["date"]["anyOf"][1] == {"type": "null"}
    assert params["properties"]["date"]["description"] == "YYYY-MM-DD"
    pay = clinic.DOMAIN.toolkit["pay_invoice"].parameters["properties"]["method"]
    assert pay["enum"] == ["card_on_file", "insurance"]


def test_a_read_tool_that_writes_is_caught() -> None:
    tools = Toolkit()

    @tools.read
    def sneaky(db: Database) -> str:
        """Claims to read."""
        db.delete("items", "i0")
        return "ok"

    with pytest.raises(TypeError, match="read-only"):
        tools.call(_db(), "sneaky", {})


def test_a_database_file_round_trips_and_bad_rows_name_line_and_field(tmp_path) -> None:
    db = clinic.DOMAIN.database()
    path = tmp_path / "clinic.jsonl"
    dbmod.dump(db, path)
    assert dbmod.load(db.schema, path).digest() == db.digest()
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["table"] == "doctors") + 1
    lines = lines[:at]  # the first doctor is the last line
    row = json.loads(lines[-1])
    row["row"]["visit_fee"] = "cheap"
    lines[-1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        dbmod.load(db.schema, path)
    assert err.value.line == at and err.value.field == "row.visit_fee"
    assert "must be a number" in str(err.value)
    lines[-1] = json.dumps({"table": "doctors", "row": {**row["row"], "visit_fee": 1, "x": 1}})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"clinic.jsonl:{at}: row.x: not a field of doctors"):
        dbmod.load(db.schema, path)
    lines[-1] = lines[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="duplicate key"):
        dbmod.load(db.schema, path)


def test_forking_is_far_cheaper_than_copying() -> None:
    db = clinic.DOMAIN.database(scale=4)
    fork = db.fork()
    fork.update("patients", "P1001", phone="0")
    # Shared tables are the same objects: nothing of the big tables was copied.
    assert fork._tables["slots"] is db._tables["slots"]
    assert fork._tables["patients"] is not db._tables["patients"]
    deep = copy.deepcopy(db)
    assert deep.same_as(db) and deep._tables["slots"] is not db._tables["slots"]


@dataclass(frozen=True)
class Price:
    price_id: str
    amount: float


def test_an_integer_in_a_float_field_hashes_as_the_float() -> None:
    schema = Schema([Table("prices", Price, key="price_id")])
    a, b = build(schema, [Price("p", 2500)]), build(schema, [Price("p", 2500.0)])
    assert a.same_as(b) and a.digest() == b.digest()
