"""The SWE environment: real Python repositories with bugs to fix, SWE-agent's tools,
and the repositories' own tests as rewards.

Registered through the ``pivotgym.envs`` entry point ``swe = pivotgym.envs.swe:ENV``.
"""

from pivotgym.core.registry import EnvSpec

ENV = EnvSpec(
    name="swe",
    entry_point="pivotgym.envs.swe.env:SWEEnv",
    description="Python repositories with a bug, SWE-agent's tools, tests as rewards",
    candidate_rule="pivotgym.core.candidates:calls_a_tool",
    verifier="swe",
    task_format="pivotgym.envs.swe.tasks:FORMAT",
)
