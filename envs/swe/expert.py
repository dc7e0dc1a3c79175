"""The SWE expert: trajectories that fix a bug instance as an engineer would.

It plays a task through the real env (a live sandbox), so every observation is what the
tools print, and strict replay holds by construction. It knows where the bug is (the
task's ``mutation``) and goes there as the issue leads:

1. **localise**: it finds the function the bug is in (``grep -rn "def NAME"`` over the
   package, or a look at the package's folder first) and views it with the editor;
   sometimes it reads the failing test first;
2. **reproduce**: it runs the first failing test;
3. **fix**: one ``str_replace`` that undoes the bug, or an equivalent rewrite (an
   ``==`` or ``!=`` with its operands swapped); sometimes a wrong first guess first (the
   same kind of edit elsewhere in the function), which a test run shows still failing
   and ``undo_edit`` takes back;
4. **verify**: it runs the targeted test files;
5. **submit**.

Choices are drawn from a seeded generator, so a trajectory is rebuilt bit for bit from
its seed. A demonstration the grader does not score 1 is an :class:`ExpertError`.
"""

from __future__ import annotations

import ast
import json
import random
import re
import shlex
from typing import Any

from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.swe.env import SWEEnv
from pivotgym.envs.swe.mutate import mutations
from pivotgym.envs.swe.tasks import WORKDIR, SWETask, materialize
from pivotgym.errors import DataError, InfraError


class ExpertError(DataError):
    """A task the expert could not solve to reward 1; the message says why."""


def _call(name: str, turn: int, **arguments: Any) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    call = {"id": f"call_{turn}", "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _span(source: str, qualname: str) -> tuple[int, int]:
    """The first and last line of the function ``qualname`` in ``source``."""
    tree = ast.parse(source)
    scope: list[Any] = [tree]
    for name in qualname.split("."):
        nodes = [n for parent in scope for n in ast.iter_child_nodes(parent)
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                 and n.name == name]  # fmt: skip
        if not nodes:
            raise ExpertError(f"no function {qualname} in the module")
        scope = nodes
    node = scope[0]
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first, node.end_lineno or node.lineno


def _region(source: str, start: int, end: int) -> tuple[int, int]:
    """The whole lines around ``source[start:end]``, grown upwards until they occur once."""
    first = source.rfind("\n", 0, start) + 1
    last = source.find("\n", end)
    last = len(source) if last < 0 else last
    while source.count(source[first:last]) > 1 and first > 0:
        first = source.rfind("\n", 0, first - 1) + 1
    return first, last


def _edit(source: str, start: int, end: int, text: str) -> tuple[str, str]:
    """``old_str`` and ``new_str`` of a ``str_replace`` that puts ``text`` in place of
    ``source[start:end]``: whole lines, enough of them to occur once."""
    first, last = _region(source, start, end)
    return source[first:last], source[first:start] + text + source[end:last]


# One comparison of two simple sides (names, attributes, numbers, strings).
_SIMPLE = r"(?:[A-Za-z_][\w.]*|\d+|'[^'\n]*'|\"[^\"\n]*\")"
_EQUALITY = re.compile(rf"(?<![\w.'\"])({_SIMPLE})\s*(==|!=)\s*({_SIMPLE})(?![\w.'\"(\[])")


def _swapped(text: str) -> str | None:
    """``text`` with its first simple ``a == b`` (or ``!=``) written ``b == a``."""
    match = _EQUALITY.search(text)
    if match is None or match.group(1) == match.group(3):
        return None
    a, op, b = match.groups()
    return text[: match.start()] + f"{b} {op} {a}" + text[match.end() :]


async def demonstrate(env: SWEEnv, task: SWETask, seed: int) -> Trajectory:
    """The expert's trajectory of ``task`` in ``env`` (module docstring)."""
    rng = random.Random(f"swe-expert-{task.key}-{seed}")
    mutation = task.extra.get("mutation")
    if not isinstance(mutation, dict):
        raise ExpertError("the task records no mutation to undo", file=task.name)
    module = mutation["module"]
    path = f"{WORKDIR}/{module}"
    tree = materialize(task)
    buggy = (tree / module).read_text()
    first, last = _span(buggy, mutation["function"])
    name = mutation["function"].split(".")[-1]
    package = task.bundled.package if task.bundled is not None else module.rsplit("/", 1)[0]
    await env.areset(options={"task": task})
    done, reward, info = False, 0.0, {}

    async def act(tool: str, **arguments: Any) -> str:
        nonlocal done, reward, info
        if done:
            raise ExpertError("the episode ended early", file=task.name)
        _, reward, terminated, truncated, info = await env.astep(_call(tool, env.turn, **arguments))
        if info.get("infra_error"):
            raise InfraError(f"{task.name}: {info['infra_error']}")
        done = terminated or truncated
        return env.messages[-1]["content"]

    # 1. Localise.
    if rng.random() < 0.3:
        await act("str_replace_editor", command="view", path=f"{WORKDIR}/{package}")
    await act("bash", command=f"grep -rn {shlex.quote('def ' + name)} {shlex.quote(package)}")
    failing = task.fail_to_pass[0]
    if rng.random() < 0.4:
        test_file = failing.split("::")[0]
        test_name = failing.split("::")[-1].split("[")[0]
        await act("bash", command=f"grep -n -A 12 {shlex.quote('def ' + test_name)} "
                                  f"{shlex.quote(test_file)}")  # fmt: skip
    margin = rng.choice((0, 2, 5))
    await act("str_replace_editor", command="view", path=path,
              view_range=[max(1, first - margin), last])  # fmt: skip
    # 2. Reproduce.
    await act("bash", command=f"python -m pytest -q {shlex.quote(failing)} 2>&1 | tail -n 25")
    # 3. Fix, sometimes after a wrong first guess.
    start = mutation["start"]
    end = start + len(mutation["text"])
    if buggy[start:end] != mutation["text"]:
        raise ExpertError("the task's tree does not hold its mutation", file=task.name)
    old, new = _edit(buggy, start, end, mutation["original"])
    if mutation["kind"] == "flip_comparison" and rng.random() < 0.4:
        new = _swapped(new) or new  # an equivalent rewrite, not the original text
    others = [m for m in mutations(buggy) if m.function == mutation["function"]
              and m.kind == mutation["kind"] and (m.end <= start or m.start >= end)]  # fmt: skip
    if others and rng.random() < 0.2:
        guess = rng.choice(others)
        wrong_old, wrong_new = _edit(buggy, guess.start, guess.end, guess.text)
        if wrong_old != old:
            await act("str_replace_editor", command="str_replace", path=path,
                      old_str=wrong_old, new_str=wrong_new)  # fmt: skip
            await act("bash", command=f"python -m pytest -q {shlex.quote(failing)} 2>&1 | "
                                      "tail -n 15")  # fmt: skip
            await act("str_replace_editor", command="undo_edit", path=path)
    await act("str_replace_editor", command="str_replace", path=path, old_str=old, new_str=new)
    # 4. Verify, 5. submit.
    files = " ".join(shlex.quote(f) for f in task.test_files)
    await act("bash", command=f"python -m pytest -q {files} 2>&1 | tail -n 5")
    await act("submit")
    if not done or reward != 1.0:
        raise ExpertError(f"the grader scored the fix {reward}: {info.get('test')}",
                          file=task.name)  # fmt: skip
    return Trajectory(
        id=f"{task.instance_id}/{seed}",
        env="swe",
        task=task.to_json(),
        messages=env.messages,
        tools=env.tools,
        metadata={"repo": task.repo, "family": task.family, "seed": seed},
    )
