"""The SWE environment: real Python repositories with bugs to fix, SWE-agent's tools,
and the repositories' own tests as rewards.

Registered through the ``pivotgym.envs`` entry point ``swe = pivotgym.envs.swe:ENV``. Its
bundled data (``python -m pivotgym.envs.swe.build``): ``train`` holds the expert's
trajectories and their instances, ``test`` held-out instances of the same repositories,
``ood`` instances of the repositories held out entirely.
"""

from pathlib import Path

from pivotgym.core.registry import EnvSpec

DATA = Path(__file__).parent / "data"

ENV = EnvSpec(
    name="swe",
    entry_point="pivotgym.envs.swe.env:SWEEnv",
    description="Python repositories with a bug, SWE-agent's tools, tests as rewards",
    trajectories={"train": DATA / "train.jsonl.gz"},
    tasks={
        "train": DATA / "tasks-train.jsonl.gz",
        "test": DATA / "tasks-test.jsonl.gz",
        "ood": DATA / "tasks-ood.jsonl.gz",
    },
    # Every turn calls a tool (the expert's last is submit), and every one is a candidate.
    candidate_rule="pivotgym.core.candidates:calls_a_tool",
    verifier="swe",
    task_format="pivotgym.envs.swe.tasks:FORMAT",
    expert="pivotgym.envs.swe.expert:demonstrate",
)
