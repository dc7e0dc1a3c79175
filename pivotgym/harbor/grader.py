"""Episode grading of sandboxed tasks: the task's ``tests/test.sh`` where the agent cannot reach it.

The agent's sandbox is never graded in place. The test runs in a fresh sandbox of the
same task that receives only the graded state, the working directory (with room to
spare, so that a full workdir leaves the tests space); ``/tmp``, the home folder, the
shell state of ``/run/pivotgym``, and whatever the agent put in ``/logs`` or
``/tests`` stay behind, and no process of the agent's exists there. The task's tests
are copied in afresh, and the test runs with :data:`GRADER_ENV`, the sandbox's fixed
environment plus settings that keep the working directory from changing how the
grader's tools behave:

- Python adds neither the working directory nor a user site to ``sys.path``
  (``PYTHONSAFEPATH``, ``PYTHONNOUSERSITE``), so ``/app/pathlib.py`` cannot shadow the
  module a check imports, and writes no byte code into the graded tree;
- git reads no global or system configuration, and before the test runs every
  repository in the graded copy loses the settings under which git would run a
  program of the repository's choosing (:data:`GIT_PROGRAM_KEYS`: file-system
  monitors, hooks, pagers, editors, signature programs, filter, diff and merge drivers,
  includes, ...), so that the test's own ``git log`` runs git and nothing else.

So the agent changes the verdict only through the end state the task asks for. What
remains is the task's own choice: a test that runs code from the graded state (the
module it was asked to fix) runs what the agent wrote, and must judge by what that
code does.

The reward is ``/logs/verifier/reward.txt`` when the test writes it and exits 0, else
1 for exit status 0 and 0 otherwise: a test that fails, is killed or runs out of time
scores 0 whatever the file says (a program that wrote the file and then killed the
test gains nothing). An end state that cannot be copied at all (a path longer than
the system takes, which only the agent can have made) scores 0 with that reason.
:func:`tampering` lists what in the agent's state aimed at the grader (files in the
grader's folders, modules named like Python's standard library at the top of the
workdir, the repository settings removed), reported in the test's info.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from pivotgym.core.grader import Episode
from pivotgym.errors import InfraError
from pivotgym.harbor.task import HarborTask
from pivotgym.sandbox import Sandbox
from pivotgym.sandbox.state import UncopyableState, printable, read_small_file, read_tree

REWARD_FILE = "verifier/reward.txt"  # below /logs
# Room the graded copy has beyond the task's quota: the tests, and what they write.
HEADROOM_MB = 64
HEADROOM_FILES = 4096
GRADER_ENV: Mapping[str, str] = {
    "PYTHONSAFEPATH": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    # Configuration from the environment outranks a repository's own: a second wall
    # behind the removal of the repository's settings.
    "GIT_CONFIG_COUNT": "5",
    "GIT_CONFIG_KEY_0": "core.fsmonitor",
    "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "core.hooksPath",
    "GIT_CONFIG_VALUE_1": "/dev/null",
    "GIT_CONFIG_KEY_2": "core.pager",
    "GIT_CONFIG_VALUE_2": "cat",
    "GIT_CONFIG_KEY_3": "log.showSignature",
    "GIT_CONFIG_VALUE_3": "false",
    "GIT_CONFIG_KEY_4": "protocol.allow",
    "GIT_CONFIG_VALUE_4": "never",
}
# Settings under which git runs a program (or reads settings from elsewhere), as
# `git config --name-only --list` prints them: section and key in lower case, a
# subsection as written, so a pattern's `.*` stands for any subsection.
GIT_PROGRAM_KEYS = (
    r"^(core\.(fsmonitor|hookspath|pager|editor|sshcommand|askpass|gitproxy"
    r"|alternaterefscommand|worktree)"
    r"|include\.path|includeif\..*\.path|pager\..*|alias\..*"
    r"|(filter|diff|merge|difftool|mergetool)\..*\.(clean|smudge|process|textconv|command"
    r"|driver|cmd|path)"
    r"|diff\.external|sequence\.editor|interactive\.difffilter"
    r"|gpg\..*|log\.showsignature|commit\.gpgsign|tag\.gpgsign|credential\..*"
    r"|remote\..*\.(uploadpack|receivepack|proxy|vcs)|url\..*|protocol\..*"
    r"|uploadpack\..*|sendemail\..*|instaweb\..*|web\.browser|browser\..*|man\..*"
    r"|gui\..*|guitool\..*|submodule\..*\.update)$"
)
# $1 the pattern, $2 the workdir. Every git folder in the tree (one holding HEAD and
# objects/, whatever its name) loses the matching keys of its configuration files;
# one line `file<TAB>key` a key removed. git only parses here: it runs nothing.
_UNCONFIGURE = r"""
pattern=$1; cd / || exit 1
find "$2" -name HEAD -type f -print0 2>/dev/null | while IFS= read -r -d '' head; do
    dir=${head%/HEAD}
    [ -d "$dir/objects" ] || continue
    for f in "$dir/config" "$dir/config.worktree" "$dir"/worktrees/*/config.worktree; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        git config --file "$f" --no-includes --name-only --list 2>/dev/null |
            grep -Ei -- "$pattern" | sort -u |
            while IFS= read -r key; do
                git config --file "$f" --unset-all "$key" 2>/dev/null &&
                    printf '%s\t%s\n' "${f#"$2"/}" "$key"
            done
    done
done
exit 0
"""
_SHADOWED = frozenset(sys.stdlib_module_names) | {"sitecustomize", "usercustomize"}


class HarborGrader:
    """The :class:`~pivotgym.core.grader.Grader` of sandboxed Harbor tasks: :func:`grade` on
    the episode's sandbox, whether it ended or was cut by a limit (the test decides)."""

    async def grade(self, episode: Episode) -> tuple[float, dict[str, Any]]:
        return await grade(episode.world.sandbox, episode.task)


async def grade(sandbox: Sandbox, task: HarborTask) -> tuple[float, dict[str, Any]]:
    """Run ``task``'s test on ``sandbox``'s end state; return the reward in [0, 1] and info."""
    workdir = task.config.workdir
    try:
        suspicious = tampering(sandbox, workdir)
    except OSError as exc:  # a driver without root, and a folder its mode closes
        suspicious = [f"the state could not be read through: {exc}"]
    limits = sandbox.spec.limits
    roomy = dataclasses.replace(
        limits,
        disk_mb=limits.disk_mb + HEADROOM_MB,
        max_files=limits.max_files + HEADROOM_FILES,
    )
    try:
        graded = (await sandbox.fork(1, keep=[workdir], limits=roomy))[0]
    except UncopyableState as exc:  # the agent's doing: a failed task, not a failed harness
        why = f"the end state cannot be graded: {exc}"
        return 0.0, {"exit_code": None, "timed_out": False, "output": why,
                     "tampering": suspicious}  # fmt: skip
    try:
        suspicious += await _unconfigure_repositories(graded, workdir)
        try:
            await graded.upload(task.tests_dir, "/tests")
        except OSError as exc:  # the graded copy has room: this is the harness's
            raise InfraError(f"copying the task's tests failed: {exc}") from exc
        result = await graded.exec(
            ["bash", "-c", "mkdir -p /logs/verifier && exec bash /tests/test.sh"],
            timeout_s=task.config.verifier_timeout_s,
            env=GRADER_ENV,
        )
        written = read_small_file(graded.host_dir("/logs"), REWARD_FILE, limit=64)
    finally:
        await graded.close()
    passed = result.exit_code == 0
    try:
        reward = min(1.0, max(0.0, float((written or b"").decode().strip()))) if passed else 0.0
    except ValueError:
        reward = 1.0
    return reward, {
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "output": result.output[-2000:],
        "tampering": suspicious,
    }


async def _unconfigure_repositories(graded: Sandbox, workdir: str) -> list[str]:
    """Remove :data:`GIT_PROGRAM_KEYS` from every repository of the graded copy."""
    tree = read_tree(graded.host_dir(workdir), digests=False)
    if not any(path.rsplit("/", 1)[-1] == "HEAD" for path in tree):
        return []
    result = await graded.exec(
        ["bash", "-c", _UNCONFIGURE, "bash", GIT_PROGRAM_KEYS, workdir],
        cwd="/",
        env=GRADER_ENV,
    )
    if result.exit_code != 0:
        raise InfraError(f"removing repository settings failed: {result.output[-300:]}")
    notes = []
    for line in result.output.splitlines():
        path, _, key = line.partition("\t")
        notes.append(f"{workdir}/{path} set {key} (removed for the grader's git)")
    return notes


def tampering(sandbox: Sandbox, workdir: str) -> list[str]:
    """What in the agent's state was aimed at the grader, in a few words each."""
    found = []
    for place in ("/logs", "/tests"):
        for path in sorted(read_tree(sandbox.host_dir(place), digests=False)):
            found.append(f"wrote {place}/{printable(path)} (the grader's; discarded)")
    for path in sorted(read_tree(sandbox.host_dir(workdir), digests=False)):
        parts = path.split("/")
        module = parts[0].removesuffix(".py").removesuffix(".pth")
        top_module = (len(parts) == 1 and parts[0].endswith((".py", ".pth"))) or (
            len(parts) == 2 and parts[1] == "__init__.py"
        )
        if top_module and module in _SHADOWED:
            found.append(f"{workdir}/{path} shadows Python's {module} (not imported by the grader)")
    return found
