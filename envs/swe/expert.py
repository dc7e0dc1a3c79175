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
from dataclasses import dataclass, field
from pathlib import Path
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


def replacement(source: str, start: int, end: int, text: str) -> tuple[str, str]:
    """``old_str`` and ``new_str`` of a ``str_replace`` that puts ``text`` in place of
    ``source[start:end]``: whole lines, enough of them to occur once."""
    first, last = _region(source, start, end)
    return source[first:last], source[first:start] + text + source[end:last]


def _simple(node: ast.expr) -> bool:
    """A name, an attribute of one, or a constant: a side that reads the same wherever it
    stands and whose evaluation does nothing."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name | ast.Constant)


def swapped_comparison(source: str, start: int, end: int) -> tuple[tuple[int, int], str] | None:
    """The span of the comparison whose ``==`` or ``!=`` is ``source[start:end]`` and
    its text with the sides swapped (``b == a`` for ``a == b``), or ``None`` where that
    would not be the same code: a chained comparison, or a side that is not simple (in
    ``"mailto:" + text == url`` the left side is the sum, not ``text``)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line))

    def offset(lineno: int, col: int) -> int:  # ``col`` counts UTF-8 bytes
        return line_starts[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1
                and isinstance(node.ops[0], ast.Eq | ast.NotEq)):  # fmt: skip
            continue
        a, b = node.left, node.comparators[0]
        a0, a1 = offset(a.lineno, a.col_offset), offset(a.end_lineno, a.end_col_offset)  # type: ignore[arg-type]
        b0, b1 = offset(b.lineno, b.col_offset), offset(b.end_lineno, b.end_col_offset)  # type: ignore[arg-type]
        if a1 <= start and end <= b0 and _simple(a) and _simple(b):
            return (a0, b1), source[b0:b1] + source[a1:b0] + source[a0:a1]
    return None


@dataclass
class Plan:
    """Where a fix lies and the edits that make it.

    ``sites`` are the functions (module, name, first and last line) the expert finds and
    views; ``edits`` the ``str_replace`` calls (module, ``old_str``, ``new_str``) in order,
    ``created`` the files it creates; ``wrong`` a first guess to make and take back.
    """

    package: str
    sites: list[tuple[str, str, int, int]]
    edits: list[tuple[str, str, str]]
    created: list[tuple[str, str]] = field(default_factory=list)
    wrong: tuple[str, str, str] | None = None


def plan_from_mutation(task: SWETask, tree: Path, rng: random.Random) -> Plan:
    """Undo the task's recorded mutation (or rewrite it equivalently), maybe after a
    wrong first guess of the same kind elsewhere in the function."""
    mutation = task.extra["mutation"]
    module = mutation["module"]
    buggy = (tree / module).read_text()
    first, last = _span(buggy, mutation["function"])
    start = mutation["start"]
    end = start + len(mutation["text"])
    if buggy[start:end] != mutation["text"]:
        raise ExpertError("the task's tree does not hold its mutation",
                          field=f"{task.instance_id}: mutation")  # fmt: skip
    old, new = replacement(buggy, start, end, mutation["original"])
    if mutation["kind"] == "flip_comparison" and rng.random() < 0.4:
        # An equivalent rewrite, not the original text, where there is one.
        fixed = buggy[:start] + mutation["original"] + buggy[end:]
        swapped = swapped_comparison(fixed, start, start + len(mutation["original"]))
        if swapped is not None:
            (a, b), text = swapped
            grown = len(mutation["original"]) - len(mutation["text"])
            old, new = replacement(buggy, a, b - grown, text)
    others = [m for m in mutations(buggy, mutation["function"])
              if m.kind == mutation["kind"] and (m.end <= start or m.start >= end)]  # fmt: skip
    wrong = None
    if others and rng.random() < 0.2:
        guess = rng.choice(others)
        wrong_old, wrong_new = replacement(buggy, guess.start, guess.end, guess.text)
        wrong = (module, wrong_old, wrong_new) if wrong_old != old else None
    package = task.bundled.package if task.bundled is not None else module.rsplit("/", 1)[0]
    name = mutation["function"].split(".")[-1]
    return Plan(package, [(module, name, first, last)], [(module, old, new)], wrong=wrong)


_FILE = re.compile(r"^--- (?:a/)?(\S+)\n\+\+\+ (?:b/)?(\S+)$", re.M)
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@(.*)$")
_DEF = re.compile(r"\b(?:def|class) (\w+)")


def plan_from_patch(task: SWETask, tree: Path) -> Plan:
    """Make the task's gold ``patch`` hunk by hunk: one ``str_replace`` a hunk (its
    context and removed lines for its added ones), a ``create`` a new file."""
    sites: list[tuple[str, str, int, int]] = []
    edits: list[tuple[str, str, str]] = []
    created: list[tuple[str, str]] = []
    marks = list(_FILE.finditer(task.patch))
    if not marks:
        raise ExpertError("the gold patch changes no file", field=f"{task.instance_id}: patch")
    for i, mark in enumerate(marks):
        before, after = mark.groups()
        body = task.patch[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else None]
        if before == "/dev/null":
            added = [line[1:] for line in body.splitlines() if line.startswith("+")]
            created.append((after, "\n".join(added) + "\n"))
            continue
        source = (tree / before).read_text()
        hunk: tuple[int, str] | None = None
        old_lines: list[str] = []
        new_lines: list[str] = []
        for line in [*body.splitlines(), "@@ -0 +0 @@"]:
            match = _HUNK.match(line)
            if match:
                if hunk is not None:
                    old, new = "\n".join(old_lines), "\n".join(new_lines)
                    at = source.find(old)
                    if at < 0:
                        raise ExpertError(f"a hunk of the gold patch does not match {before}",
                                          field=f"{task.instance_id}: patch")  # fmt: skip
                    old, new = replacement(source, at, at + len(old), new)
                    edits.append((before, old, new))
                    name = _DEF.search(hunk[1])
                    first = max(1, hunk[0] - 5)
                    if name:
                        sites.append((before, name.group(1), first, first + len(old_lines) + 8))
                hunk, old_lines, new_lines = (int(match.group(1)), match.group(2)), [], []
            elif hunk is not None and line[:1] in (" ", "-", "+", ""):
                if line[:1] in (" ", "", "-"):
                    old_lines.append(line[1:])
                if line[:1] in (" ", "", "+"):
                    new_lines.append(line[1:])
    if not sites:
        module = edits[0][0] if edits else created[0][0]
        sites.append((module, "", 1, 40))
    package = task.bundled.package if task.bundled is not None else sites[0][0].split("/")[0]
    return Plan(package, sites, edits, created)


async def demonstrate(env: SWEEnv, task: SWETask, seed: int) -> Trajectory:
    """The expert's trajectory of ``task`` in ``env`` (module docstring): it undoes the
    task's recorded mutation, or makes its gold ``patch`` (an instance of another
    origin)."""
    rng = random.Random(f"swe-expert-{task.key}-{seed}")
    tree = materialize(task)
    if isinstance(task.extra.get("mutation"), dict):
        plan = plan_from_mutation(task, tree, rng)
    elif task.patch:
        # An instance from elsewhere: its tests must tell its fix before it is shown.
        await env.grader.check_instance(task)
        plan = plan_from_patch(task, tree)
    else:
        raise ExpertError("the task has neither a recorded bug nor a gold patch",
                          field=f"{task.instance_id}: patch")  # fmt: skip
    await env.areset(options={"task": task})
    done, reward, info = False, 0.0, {}

    async def act(tool: str, **arguments: Any) -> str:
        nonlocal done, reward, info
        if done:
            raise ExpertError("the episode ended early", field=f"{task.instance_id}: max_turns")
        _, reward, terminated, truncated, info = await env.astep(_call(tool, env.turn, **arguments))
        if info.get("infra_error"):
            raise InfraError(f"{task.name}: {info['infra_error']}")
        done = terminated or truncated
        return env.messages[-1]["content"]

    # 1. Localise.
    if rng.random() < 0.3:
        await act("str_replace_editor", command="view", path=f"{WORKDIR}/{plan.package}")
    module, name, first, last = plan.sites[0]
    if name:
        await act("bash", command=f"grep -rn {shlex.quote('def ' + name)} "
                                  f"{shlex.quote(plan.package)}")  # fmt: skip
    failing = task.fail_to_pass[0]
    if rng.random() < 0.4:
        test_file = failing.split("::")[0]
        test_name = failing.split("::")[-1].split("[")[0]
        await act("bash", command=f"grep -n -A 12 {shlex.quote('def ' + test_name)} "
                                  f"{shlex.quote(test_file)}")  # fmt: skip
    margin = rng.choice((0, 2, 5))
    for module, _, first, last in plan.sites:
        lines = len((tree / module).read_text().splitlines())
        await act("str_replace_editor", command="view", path=f"{WORKDIR}/{module}",
                  view_range=[max(1, first - margin), min(last, lines)])  # fmt: skip
    # 2. Reproduce.
    await act("bash", command=f"python -m pytest -q {shlex.quote(failing)} 2>&1 | tail -n 25")
    # 3. Fix, sometimes after a wrong first guess.
    if plan.wrong is not None:
        module, old, new = plan.wrong
        path = f"{WORKDIR}/{module}"
        await act("str_replace_editor", command="str_replace", path=path, old_str=old, new_str=new)
        await act("bash", command=f"python -m pytest -q {shlex.quote(failing)} 2>&1 | "
                                  "tail -n 15")  # fmt: skip
        await act("str_replace_editor", command="undo_edit", path=path)
    for module, text in plan.created:
        await act("str_replace_editor", command="create", path=f"{WORKDIR}/{module}",
                  file_text=text)  # fmt: skip
    for module, old, new in plan.edits:
        await act("str_replace_editor", command="str_replace", path=f"{WORKDIR}/{module}",
                  old_str=old, new_str=new)  # fmt: skip
    # 4. Verify, 5. submit.
    files = " ".join(shlex.quote(f) for f in task.test_files)
    await act("bash", command=f"python -m pytest -q {files} 2>&1 | tail -n 5")
    await act("submit")
    if not done or reward != 1.0:
        raise ExpertError(f"the grader scored the fix {reward}: {info.get('test')}",
                          field=f"{task.instance_id}: patch")  # fmt: skip
    return Trajectory(
        id=f"{task.instance_id}/{seed}",
        env="swe",
        task=task.to_json(),
        messages=env.messages,
        tools=env.tools,
        metadata={"repo": task.repo, "family": task.family, "seed": seed},
    )
