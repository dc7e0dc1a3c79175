"""Loading, validating and saving trajectories."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

import pivotgym
from pivotgym.errors import DataError


def call(call_id: str, command: str, name: str = "bash") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps({"command": command})},
    }


def good_row(**changes) -> dict:
    row = {
        "id": "t1",
        "env": "terminal",
        "task": {"name": "demo", "instruction": "say hi", "tests": {"test.sh": "exit 0"}},
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "say hi"},
            {"role": "assistant", "content": "Looking.", "tool_calls": [call("c0", "ls")]},
            {"role": "tool", "tool_call_id": "c0", "content": "a.txt\n"},
            {"role": "assistant", "content": "Done."},
        ],
        "metadata": {"family": "demo"},
    }
    row.update(changes)
    return row


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_load_and_turn_structure(tmp_path: Path) -> None:
    (traj,) = pivotgym.load_trajectories(write_lines(tmp_path / "t.jsonl", [good_row()]))
    assert traj.num_turns == 2
    assert traj.assistant_indices == [2, 4]
    assert [m["role"] for m in traj.prefix(1)] == ["system", "user", "assistant", "tool"]
    assert traj.prefix(0) == traj.messages[:2]
    assert traj.tool_results(0) == [traj.messages[3]]
    assert traj.tool_results(1) == []
    assert traj.base_dir == tmp_path


def with_arguments(arguments) -> dict:
    """A row whose only message calls bash with ``arguments`` as given."""
    call = {"id": "a", "type": "function", "function": {"name": "bash", "arguments": arguments}}
    return good_row(messages=[{"role": "assistant", "content": None, "tool_calls": [call]}])


ARGS = "messages[0].tool_calls[0].function.arguments"
ORPHAN_TOOL = [
    {"role": "assistant", "content": None, "tool_calls": [call("a", "ls")]},
    {"role": "tool", "tool_call_id": "zzz", "content": ""},
]


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("{not json", None, "not valid JSON"),
        (good_row(messages=[]), "messages", "empty trajectory"),
        (good_row(messages=[{"role": "user", "content": "x"}]), "messages", "no assistant turn"),
        (
            good_row(messages=[{"role": "robot", "content": "x"}]),
            "messages[0].role",
            "unknown role",
        ),
        (good_row(messages=ORPHAN_TOOL), "messages[1].tool_call_id", "matches no call"),
        (with_arguments("{bad"), ARGS, "not valid JSON"),
        (with_arguments("[1]"), ARGS, "JSON object"),
        (with_arguments("[" * 1100 + "]" * 1100), ARGS, "nested too deeply"),
        ("[" * 1100 + "]" * 1100, None, "nested too deeply"),
        (with_arguments({"x": 1}), ARGS, "JSON object string"),
        (good_row(id=""), "id", "non-empty string"),
        (good_row(task=None), "task", "required"),
        (good_row(extra=1), None, "unknown field"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line, field, words) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [good_row(id="first"), "", line])
    with pytest.raises(DataError) as err:
        pivotgym.load_trajectories(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ")
    assert err.value.line == 3
    assert err.value.field == field
    assert words in message
    if field:
        assert f": {field}: " in message


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dup.jsonl", [good_row(), good_row()])
    with pytest.raises(DataError, match=r"dup.jsonl:2: id: duplicate id 't1' \(first on line 1\)"):
        pivotgym.load_trajectories(path)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such trajectory file"):
        pivotgym.load_trajectories(tmp_path / "nope.jsonl")


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_invalid_utf8_is_a_data_error_after_the_good_lines(tmp_path: Path, suffix: str) -> None:
    good = [json.dumps(good_row(id=f"t{i}")).encode() + b"\n" for i in range(2)]
    bad = json.dumps(good_row(id="bad", metadata={"note": "@"})).encode().replace(b"@", b"\xff")
    data = b"".join(good) + bad + b"\n"
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    loaded = []
    with pytest.raises(DataError) as err:
        loaded.extend(pivotgym.iter_trajectories(path))
    assert [t.id for t in loaded] == ["t0", "t1"]
    assert (err.value.file, err.value.line) == (str(path), 3)
    assert str(err.value).startswith(f"{path}:3: ") and "UTF-8" in str(err.value)
    with pytest.raises(DataError, match="UTF-8"):
        pivotgym.load_trajectories(path)


def test_a_corrupt_gzip_file_is_a_data_error_after_the_good_lines(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(json.dumps(good_row(id=f"t{i}")).encode() + b"\n"
                                  for i in range(300)))  # fmt: skip
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    loaded = []
    with pytest.raises(DataError, match="gzip") as err:
        loaded.extend(pivotgym.iter_trajectories(path))
    assert err.value.file == str(path) and err.value.line == len(loaded) + 1 > 1


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_save_round_trips_exactly(tmp_path: Path, suffix: str) -> None:
    rows = [good_row(id=f"t{i}", metadata={"i": i, "ünï": "çødé"}) for i in range(3)]
    rows[1].pop("metadata")
    source = write_lines(tmp_path / "in.jsonl", rows)
    loaded = pivotgym.load_trajectories(source)
    out = tmp_path / f"out{suffix}"
    assert pivotgym.save_trajectories(loaded, out) == 3
    again = pivotgym.load_trajectories(out)
    assert again == loaded
    assert [t.to_json() for t in again] == rows
    resaved = tmp_path / f"again{suffix}"
    pivotgym.save_trajectories(again, resaved)
    assert resaved.read_bytes() == out.read_bytes()
    if suffix == ".jsonl.gz":
        lines = gzip.decompress(out.read_bytes()).decode().splitlines()
        assert [json.loads(line) for line in lines] == rows


def test_bundled_train_split_loads_by_name() -> None:
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    assert len(trajectories) >= 2000
    assert all(2 <= t.num_turns <= 10 for t in trajectories)
    assert len({t.metadata["family"] for t in trajectories}) >= 20


def test_unknown_split_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no trajectory split 'nope'"):
        pivotgym.load_trajectories("terminal", split="nope")
