"""Episode grading of sandboxed tasks: the task's ``tests/test.sh`` where the agent cannot reach it.

The agent's sandbox is never graded in place. The test runs in a fresh sandbox of the
same task that receives only the graded state, the working directory; ``/tmp``, the
home folder, the shell state of ``/run/pivotgym``, and whatever the agent put in
``/logs`` or ``/tests`` stay behind, and no process of the agent's exists there. The
task's tests are copied in afresh, and the test runs with :data:`GRADER_ENV`, the
sandbox's fixed environment plus settings that keep the working directory from
changing how the grader's tools behave:

- Python adds neither the working directory nor a user site to ``sys.path``
  (``PYTHONSAFEPATH``, ``PYTHONNOUSERSITE``), so ``/app/pathlib.py`` cannot shadow the
  module a check imports, and writes no byte code into the graded tree;
- git reads no global or system configuration, and a repository's own configuration
  cannot make it run a file-system monitor, hooks, an external diff or a pager.

So the agent changes the verdict only through the end state the task asks for. What
remains is the task's own choice: a test that runs code from the graded state (the
module it was asked to fix, a repository's filters) runs what the agent wrote, and must
judge by what that code does.

The reward is ``/logs/verifier/reward.txt`` when the test writes it, else 1 for exit
status 0 and 0 otherwise; 0 when the end state cannot be copied at all (a path longer
than the system takes, which only the agent can have made). :func:`tampering` lists
what in the agent's state aimed at the grader (files in the grader's folders, modules
named like Python's standard library at the top of the workdir, repositories
configured to run programs), reported in the test's info; none of it reaches the
grader.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from pivotgym.sandbox import Sandbox
from pivotgym.sandbox.state import UncopyableState, read_small_file, read_tree
from pivotgym.tasks import Task

REWARD_FILE = "verifier/reward.txt"  # below /logs
GRADER_ENV: Mapping[str, str] = {
    "PYTHONSAFEPATH": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    # Configuration from the environment outranks a repository's own.
    "GIT_CONFIG_COUNT": "4",
    "GIT_CONFIG_KEY_0": "core.fsmonitor",
    "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath",
    "GIT_CONFIG_VALUE_1": "/dev/null",
    "GIT_CONFIG_KEY_2": "core.pager",
    "GIT_CONFIG_VALUE_2": "cat",
    "GIT_CONFIG_KEY_3": "diff.external",
    "GIT_CONFIG_VALUE_3": "",
}
# Repository settings under which git runs a program of the repository's choosing.
_GIT_PROGRAMS = re.compile(
    r"^(core\.(fsmonitor|hookspath|pager|editor|sshcommand|askpass)"
    r"|diff\.external|(filter|diff|merge)\..+\.(clean|smudge|process|textconv|command|driver)"
    r"|sequence\.editor|credential\.helper)$"
)
_SHADOWED = frozenset(sys.stdlib_module_names) | {"sitecustomize", "usercustomize"}


async def grade(sandbox: Sandbox, task: Task) -> tuple[float, dict[str, Any]]:
    """Run ``task``'s test on ``sandbox``'s end state; return the reward in [0, 1] and info."""
    workdir = task.config.workdir
    suspicious = tampering(sandbox, workdir)
    try:
        graded = (await sandbox.fork(1, keep=[workdir]))[0]
    except UncopyableState as exc:  # the agent's doing: a failed task, not a failed harness
        why = f"the end state cannot be graded: {exc}"
        return 0.0, {"exit_code": None, "timed_out": False, "output": why,
                     "tampering": suspicious}  # fmt: skip
    try:
        await graded.upload(task.tests_dir, "/tests")
        result = await graded.exec(
            ["bash", "-c", "mkdir -p /logs/verifier && exec bash /tests/test.sh"],
            timeout_s=task.config.verifier_timeout_s,
            env=GRADER_ENV,
        )
        written = read_small_file(graded.host_dir("/logs"), REWARD_FILE, limit=64)
    finally:
        await graded.close()
    try:
        reward = min(1.0, max(0.0, float((written or b"").decode().strip())))
    except ValueError:
        reward = 1.0 if result.exit_code == 0 else 0.0
    return reward, {
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "output": result.output[-2000:],
        "tampering": suspicious,
    }


def tampering(sandbox: Sandbox, workdir: str) -> list[str]:
    """What in the agent's state was aimed at the grader, in a few words each."""
    found = []
    for place in ("/logs", "/tests"):
        for path in sorted(read_tree(sandbox.host_dir(place), digests=False)):
            found.append(f"wrote {place}/{path} (the grader's; discarded)")
    work = sandbox.host_dir(workdir)
    tree = read_tree(work, digests=False)
    for path, entry in sorted(tree.items()):
        parts = path.split("/")
        module = parts[0].removesuffix(".py").removesuffix(".pth")
        top_module = (len(parts) == 1 and parts[0].endswith((".py", ".pth"))) or (
            len(parts) == 2 and parts[1] == "__init__.py"
        )
        if top_module and module in _SHADOWED:
            found.append(f"{workdir}/{path} shadows Python's {module} (not imported by the grader)")
        if parts[-2:] == [".git", "config"] and entry.kind == "f":
            text = (read_small_file(work, path) or b"").decode("utf-8", "replace")
            for key in _git_program_keys(text):
                found.append(f"{workdir}/{path} sets {key} (ignored by the grader's git)")
    return found


def _git_program_keys(text: str) -> list[str]:
    """Keys of a git configuration file under which git would run a program."""
    keys, section = [], ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        header = re.match(r'^\[\s*([A-Za-z0-9.-]+)(?:\s+"([^"]*)")?\s*\]', line)
        if header:
            name, sub = header.group(1).lower(), header.group(2)
            section = f"{name}.{sub}" if sub is not None else name
            continue
        key = re.match(r"^([A-Za-z][A-Za-z0-9-]*)\s*(=|$)", line)
        if key and section:
            full = f"{section}.{key.group(1).lower()}"
            if _GIT_PROGRAMS.match(full):
                keys.append(full)
    return keys
