"""Run configuration: TOML file, overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivotgym.cli import main
from pivotgym.errors import DataError
from pivotgym.runs.config import RunConfig, check_resume, load_config


def test_defaults_file_and_overrides_compose(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("seed = 3\n[train]\nsteps = 5\nlr = 1\n[profile]\nk = 4\n")
    config = load_config(path, ["train.steps=7", "out=somewhere", "profile.verifier=exact"])
    assert (config.seed, config.train.steps, config.profile.k) == (3, 7, 4)
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.out == "somewhere" and config.profile.verifier == "exact"
    assert config.data == RunConfig().data


def test_resolved_config_round_trips_through_toml(tmp_path: Path) -> None:
    config = load_config(None, ["train.steps=9", "eval.temperature=0.5", "train.scale_std=false"])
    path = tmp_path / "resolved.toml"
    path.write_text(config.dump_toml())
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("text", "overrides", "words"),
    [
        ("[train]\nstepz = 5\n", [], "train.stepz: unknown key"),
        ("[train]\nsteps = 'five'\n", [], "train.steps: expected int"),
        ("train = 3\n", [], "train: must be a table"),
        ("[train\n", [], "invalid TOML"),
        ("", ["profile.k=true"], "profile.k: expected int"),
        ("", ["profile.k=1"], "profile.k: must be at least 2, got 1"),
        ("[data]\nood_questions = 0\n", [], "bad.toml:2: data.ood_questions: must be at least 1"),
        ("", ["train.steps=-3"], "train.steps: must be at least 1"),
        ("", ["nosuch=1"], "nosuch: unknown key"),
        ("", ["novalue"], "not KEY=VALUE"),
    ],
)
def test_bad_config_names_the_file_and_field(tmp_path: Path, text, overrides, words) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=words):
        load_config(path, overrides)


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ("seed = 1\n[train\n", None, 2),
        ("[train]\nsteps = 5\nstepz = 5\n", "train.stepz", 3),
        ("[data]\nsplit = 'x'\n\n[train]\nsteps = 'five'\n", "train.steps", 5),
        ("seed = 1\ntrain = 3\n", "train", 2),
        ("train.steps = 'x'\n", "train.steps", 1),
        ("profile = { k = 'x' }\n", "profile.k", 1),
        ("[train]\nsteps = 1\n[train.more]\nx = 1\n", "train.more", 3),
    ],
)
def test_bad_config_names_the_line(tmp_path: Path, text, field, line) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_config(path)
    assert (err.value.file, err.value.field, err.value.line) == (str(path), field, line)
    assert str(err.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--env", "nope"],
        ["run", "--set", "train.steps=x"],
        ["run", "--config", "/nonexistent/run.toml"],
        ["run", "--model", "/nonexistent/model"],
        ["profile", "--set", "data.split='nosplit'"],
    ],
)
def test_cli_exits_2_with_one_line_and_computes_nothing(tmp_path: Path, argv, capsys) -> None:
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pivotgym: error: ") and err.count("\n") == 1
    assert not out.exists()


def test_a_run_resumes_only_under_the_settings_it_was_made_with(tmp_path: Path) -> None:
    made = load_config(overrides=["profile.k=8"])
    (tmp_path / "config.toml").write_text(made.dump_toml())
    check_resume(tmp_path, load_config(overrides=["profile.k=8"]))
    check_resume(tmp_path, load_config(overrides=["device='cuda'", "out='elsewhere'"]))
    with pytest.raises(DataError) as err:
        check_resume(tmp_path, load_config(overrides=["profile.k=6", "train.lr=2e-4"]))
    assert err.value.file == str(tmp_path / "config.toml") and err.value.field == "profile.k"
    lines = made.dump_toml().split("\n")
    assert err.value.line == lines.index("k = 8", lines.index("[profile]")) + 1
    assert "made with 8, now 6" in str(err.value)
    check_resume(tmp_path / "fresh", made)


def test_the_cli_refuses_to_resume_a_run_under_other_settings(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.toml").write_text(load_config(overrides=["data.max_candidates=48"]).dump_toml())
    before = sorted(out.iterdir())
    assert main(["run", "--out", str(out)]) == 2
    assert "data.max_candidates: this run was made with 48, now 384" in capsys.readouterr().err
    assert sorted(out.iterdir()) == before
