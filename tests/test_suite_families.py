"""The bundled terminal task suite: every family's instances are solvable and checkable.

Each instance must fail its verifier untouched, pass it after the expert's
commands (replayed with cwd and exports carried across turns, as the sandbox
shell does) and after the reference solution. No sandbox is needed: the
commands run with bash in a temporary folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("pivotgym") is not None:
    import pivotgym

    try:
        importlib.import_module("pivotgym.envs")
    except ImportError:
        # Not installed: map envs/ to pivotgym.envs the way pyproject's package-dir does.
        envs = types.ModuleType("pivotgym.envs")
        envs.__path__ = [str(ROOT / "envs")]
        sys.modules["pivotgym.envs"] = envs
        pivotgym.envs = envs  # type: ignore[attr-defined]

from pivotgym.envs.terminal.suite.check import check_plan, generate  # noqa: E402
from pivotgym.envs.terminal.suite.families import FAMILIES, HELD_OUT_FAMILIES  # noqa: E402

INSTANCES = 3


def test_registry_covers_enough_distinct_work() -> None:
    assert len(FAMILIES) >= 24
    assert len(HELD_OUT_FAMILIES) >= 4
    assert set(HELD_OUT_FAMILIES) <= set(FAMILIES)
    assert len(FAMILIES) - len(HELD_OUT_FAMILIES) >= 20
    for name, family in FAMILIES.items():
        assert family.name == name and family.description


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_instances_fail_untouched_and_pass_after_expert_and_solution(family: str) -> None:
    for index in range(INSTANCES):
        check_plan(generate(family, index))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generation_is_deterministic_and_well_formed(family: str) -> None:
    names = set()
    for index in range(INSTANCES):
        plan = generate(family, index)
        assert plan == generate(family, index)
        assert plan.name == f"{family}-{index:05d}" and plan.family == family
        assert 2 <= len(plan.expert) <= 10
        assert plan.expert[-1].command is None
        assert all(turn.command for turn in plan.expert[:-1])
        assert plan.instruction.strip() and plan.files
        assert not any(p.startswith("/") or ".." in p.split("/") for p in plan.files)
        names.add(plan.name)
    assert len(names) == INSTANCES


def test_seeds_vary_the_instances() -> None:
    for family in FAMILIES:
        plans = {
            generate(family, 0, seed=s).instruction + repr(generate(family, 0, seed=s).files)
            for s in range(4)
        }
        assert len(plans) > 1, family
