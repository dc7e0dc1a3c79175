"""Invariants of reset-to-turn and fork, checked on random shell sessions.

- Replay determinism: record a session by stepping the terminal env; resetting to any
  turn (in any order, through the shared snapshot cache or from scratch) replays under
  the strict divergence policy and reproduces the workdir and shell state seen live.
- Fork isolation: actions applied to random branches of a fork (the parent included)
  change that branch only; each branch ends exactly where its own actions alone lead.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from terminal_tasks import bash, make_task

import pivotgym
from pivotgym.core.replay import SnapshotCache
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.sandbox.bwrap import BwrapBackend

_UNAVAILABLE = BwrapBackend.available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"bwrap: {_UNAVAILABLE}")

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# A small alphabet of shell actions over a few names, so that sequences collide: files
# are overwritten, moved onto each other, removed, and directories come and go.
_words = st.sampled_from(["alpha", "beta", "gamma", "42"])
_files = st.sampled_from(["a", "b", "d/c", "d/e/f"])
_dirs = st.sampled_from(["d", "d/e", "x"])
ACTIONS = st.one_of(
    st.builds("echo {} > {}".format, _words, _files),
    st.builds("echo {} >> {}".format, _words, _files),
    st.builds("mkdir -p {}".format, _dirs),
    st.builds("mv {} {}".format, _files | _dirs, _files | _dirs),
    st.builds("cd {}".format, _dirs | st.just("/app") | st.just("..")),
    st.builds("export V={}".format, _words),
    st.builds("rm -f {}".format, _files),
    st.builds("rm -rf {}".format, _dirs),
    st.builds("cat {}".format, _files),
    # The workdir's listing: after `cd ..`, a bare `ls -R` would list /proc, whose
    # contents (addresses in map_files) no two runs share.
    st.sampled_from(["ls -R /app", 'echo "$V"', "pwd"]),
)

# Every path of the workdir with its content, then the shell state the next command
# starts from (directory and exported variables).
STATE = (
    "cd /app && find . -mindepth 1 | sort | while read -r p; do "
    'if [ -f "$p" ]; then printf "%s: %s\\n" "$p" "$(cat "$p")"; else echo "$p/"; fi; done; '
    "cat /run/pivotgym/cwd /run/pivotgym/env 2>/dev/null; true"
)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    return pivotgym.load_task(make_task(root, files={"seed.txt": "seed\n", "d/old": "old\n"}))


async def _state(env: TerminalEnv) -> str:
    return (await env.sandbox.exec(["bash", "-c", STATE])).output


@given(commands=st.lists(ACTIONS, min_size=1, max_size=6), data=st.data())
@SETTINGS
def test_reset_to_every_turn_reproduces_the_live_state(task, commands, data):
    order = data.draw(st.permutations(range(len(commands) + 1)), label="restore order")

    async def go():
        recorder = TerminalEnv(tasks=[task], sandbox="bwrap")
        await recorder.areset(options={"task": task})
        live = [await _state(recorder)]
        for i, command in enumerate(commands):
            await recorder.astep(bash(command, f"c{i}"))
            live.append(await _state(recorder))
        trajectory = Trajectory("random", "terminal", str(task.root), list(recorder.messages))
        await recorder.aclose()

        cached = TerminalEnv(tasks=[task], sandbox="bwrap", divergence="strict")
        try:
            for turn in order:
                obs, info = await cached.areset(options={"trajectory": trajectory, "turn": turn})
                assert obs == trajectory.prefix(turn)
                assert await _state(cached) == live[turn], f"turn {turn} of {commands}"
            # Every state was replayed once at most, whatever the order.
            assert cached.cache.replayed_steps <= len(commands)
        finally:
            await cached.aclose()

        cold = TerminalEnv(tasks=[task], sandbox="bwrap", cache=SnapshotCache(max_entries=1))
        try:
            last = len(commands)
            _, info = await cold.areset(options={"trajectory": trajectory, "turn": last})
            assert info["replayed_steps"] == last
            assert await _state(cold) == live[last]
        finally:
            await cold.aclose()

    pivotgym.run_sync(go())


@given(
    prefix=st.lists(ACTIONS, max_size=3),
    branches=st.integers(min_value=2, max_value=3),
    moves=st.lists(st.tuples(st.integers(0, 2), ACTIONS), min_size=1, max_size=8),
)
@SETTINGS
def test_actions_on_one_branch_never_show_in_another(task, prefix, branches, moves):
    moves = [(b % branches, command) for b, command in moves]

    async def go():
        parent = TerminalEnv(tasks=[task], sandbox="bwrap")
        await parent.areset(options={"task": task})
        for command in prefix:
            await parent.astep(bash(command))
        envs = [parent, *await parent.afork(branches - 1)]
        try:
            for b, command in moves:
                await envs[b].astep(bash(command))
            for b, env in enumerate(envs):
                # Where the branch's own actions alone lead, in a sandbox of its own.
                alone = TerminalEnv(tasks=[task], sandbox="bwrap")
                try:
                    await alone.areset(options={"task": task})
                    for command in prefix + [c for owner, c in moves if owner == b]:
                        await alone.astep(bash(command))
                    assert await _state(env) == await _state(alone), f"branch {b}"
                finally:
                    await alone.aclose()
        finally:
            for env in envs:
                await env.aclose()

    pivotgym.run_sync(go())
