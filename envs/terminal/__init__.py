"""The terminal environment: a bash tool in a sandbox, with a bundled suite of shell tasks.

Registered through the ``pivotgym.envs`` entry point ``terminal = pivotgym.envs.terminal:ENV``
(see ``pyproject.toml``), exactly as a third-party environment would be.
"""

from pathlib import Path

from pivotgym.core.registry import EnvSpec

DATA = Path(__file__).parent / "data"

ENV = EnvSpec(
    name="terminal",
    entry_point="pivotgym.envs.terminal.env:TerminalEnv",
    description="bash in a sandbox; shell-work tasks in Harbor's format with expert trajectories",
    trajectories={"train": DATA / "train.jsonl.gz", "test": DATA / "test.jsonl.gz"},
    tasks={"test": DATA / "tasks-test.jsonl.gz", "ood": DATA / "tasks-ood.jsonl.gz"},
    # Candidates are the turns that run a command (the final summary is not an action on
    # the world), scored by executing them beside the expert's command from one state.
    candidate_rule="pivotgym.core.candidates:calls_a_tool",
    verifier="execution",
)
