"""Harbor-layout task directories and inline task specs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from taskdirs import make_task

import pivotgym
from pivotgym.errors import DataError
from pivotgym.harbor.task import load_task_specs, materialize_inline, resolve_task


def test_load_task_reads_harbor_layout(tmp_path: Path) -> None:
    folder = make_task(
        tmp_path,
        toml='[pivotgym]\nexec_timeout_sec = 5\nmax_turns = 7\nnormalize = ["id=\\\\d+"]\n',
    )
    task = pivotgym.load_task(folder)
    assert task.name == "count-lines"
    assert task.instruction.startswith("Write the number")
    assert task.config.verifier_timeout_s == 30.0
    assert task.config.max_turns == 7
    assert task.config.normalize == ("id=\\d+",)
    limits = task.config.limits(timeout_s=None, memory_mb=100)
    assert (limits.timeout_s, limits.memory_mb, limits.disk_mb, limits.network) == (
        5.0,
        100,
        64,
        False,
    )
    assert task.dockerfile is None and task.solution is not None


def test_load_tasks_from_a_folder_sorts_by_name(tmp_path: Path) -> None:
    for name in ("b-task", "a-task"):
        make_task(tmp_path, name)
    assert [t.name for t in pivotgym.load_tasks(tmp_path)] == ["a-task", "b-task"]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda f: (f / "instruction.md").unlink(), "missing instruction.md"),
        (lambda f: (f / "tests" / "test.sh").unlink(), "missing tests/test.sh"),
        (lambda f: (f / "task.toml").write_text("[agent\n"), "invalid TOML"),
        (
            lambda f: (f / "task.toml").write_text("[pivotgym]\nbogus = 1\n"),
            "pivotgym.bogus: unknown key",
        ),
        (
            lambda f: (f / "task.toml").write_text("[verifier]\ntimeout_sec = 'x'\n"),
            "verifier.timeout_sec",
        ),
        (
            lambda f: (f / "task.toml").write_text("[environment]\nallow_internet = 1\n"),
            "environment.allow_internet",
        ),
    ],
)
def test_malformed_task_dirs_say_what_is_wrong(tmp_path: Path, mutate, words) -> None:
    folder = make_task(tmp_path)
    mutate(folder)
    with pytest.raises(DataError) as err:
        pivotgym.load_task(folder)
    assert words in str(err.value)
    assert str(folder) in str(err.value)


@pytest.mark.parametrize(
    ("toml", "field", "line"),
    [
        ('version = "1.0"\n\n[agent\n', None, 3),
        ("[verifier]\ntimeout_sec = 30\n[pivotgym]\n# bogus = 2\nbogus = 1\n", "pivotgym.bogus", 5),
        ("[environment]\nmemory_mb = 256\nstorage_mb = 'lots'\n", "environment.storage_mb", 3),
        ('version = "1.0"\npivotgym.max_turns = "x"\n', "pivotgym.max_turns", 2),
        ("environment = { memory_mb = 1, allow_internet = 1 }\n", "environment.allow_internet", 1),
        ("allow_internet = 1\n", "allow_internet", 1),
        ("pivotgym = 3\n", "pivotgym", 1),
        # Text that looks like TOML inside a string or an array is not a key.
        (
            'notes = """\n[pivotgym]\nmax_turns = 1\n"""\n[pivotgym]\nmax_turns = "x"\n',
            "pivotgym.max_turns",
            6,
        ),
        ('[pivotgym]\nnormalize = [\n  ["x"]\n]\nmax_turns = "x"\n', "pivotgym.max_turns", 5),
        # A key whose name holds a dot reads like a dotted key: no line rather than a guess.
        ('[pivotgym]\n"max.turns" = 1\n', "pivotgym.max.turns", None),
    ],
)
def test_task_toml_errors_name_the_line(tmp_path: Path, toml, field, line) -> None:
    folder = make_task(tmp_path)
    (folder / "task.toml").write_text(toml)
    with pytest.raises(DataError) as err:
        pivotgym.load_task(folder)
    assert err.value.file == str(folder / "task.toml")
    assert (err.value.field, err.value.line) == (field, line), str(err.value)
    if line is not None:
        assert str(err.value).startswith(f"{folder / 'task.toml'}:{line}: ")


def test_inline_spec_materializes_once_with_binary_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PIVOTGYM_CACHE_DIR", str(tmp_path / "cache"))
    blob = bytes(range(256))
    spec = {
        "name": "inline",
        "instruction": "do it",
        "config": {"pivotgym": {"max_turns": 3}, "environment": {"allow_internet": False}},
        "environment": {"a.txt": "text", "bin/b.dat": {"base64": base64.b64encode(blob).decode()}},
        "tests": {"test.sh": "exit 0"},
    }
    task = materialize_inline(spec)
    assert (task.environment_dir / "bin" / "b.dat").read_bytes() == blob
    assert task.config.max_turns == 3
    assert materialize_inline(spec).root == task.root
    assert resolve_task(spec, None).key == task.key


def test_inline_spec_cannot_escape_its_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PIVOTGYM_CACHE_DIR", str(tmp_path / "cache"))
    spec = {
        "name": "x",
        "instruction": "i",
        "environment": {"../../evil": "x"},
        "tests": {"test.sh": ""},
    }
    with pytest.raises(DataError, match="escapes the task"):
        materialize_inline(spec)


def test_bundled_splits() -> None:
    test_tasks = pivotgym.load_tasks("terminal", split="test")
    ood_tasks = pivotgym.load_tasks("terminal", split="ood")
    train = pivotgym.load_trajectories("terminal", split="train")
    assert len(test_tasks) >= 200
    train_families = {t.metadata["family"] for t in train}
    test_families = {t.config.family for t in test_tasks}
    ood_families = {t.config.family for t in ood_tasks}
    assert test_families <= train_families
    assert len(ood_families) >= 4 and not ood_families & train_families
    assert not {t.name for t in test_tasks} & {t.task["name"] for t in train}


def test_task_specs_with_invalid_utf8_name_the_line(tmp_path: Path) -> None:
    good = json.dumps({"name": "a", "instruction": "x"}).encode() + b"\n"
    path = tmp_path / "specs.jsonl"
    path.write_bytes(good + b'{"name": "\xff"}\n')
    with pytest.raises(DataError, match="UTF-8") as err:
        load_task_specs(path)
    assert (err.value.file, err.value.line) == (str(path), 2)
