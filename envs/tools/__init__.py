"""The tool-API environment: agents serving users under a policy, over domain databases.

Registered through the ``pivotgym.envs`` entry point ``tools = pivotgym.envs.tools:ENV``;
its domains through the ``pivotgym.tool_domains`` group (``docs/tools.md`` shows how to
add one).
"""

from pathlib import Path

from pivotgym.core.registry import EnvSpec

DATA = Path(__file__).parent / "data"

ENV = EnvSpec(
    name="tools",
    entry_point="pivotgym.envs.tools.env:ToolsEnv",
    description="tool APIs over a domain database with a policy and a simulated user",
    trajectories={"train": DATA / "train.jsonl.gz"},
    tasks={"test": DATA / "tasks-test.jsonl.gz", "ood": DATA / "tasks-ood.jsonl.gz"},
    # Every assistant turn is a candidate: a question to the user or a refusal is as
    # much the policy's act as a tool call.
    verifier="tool_api",
    task_format="pivotgym.envs.tools.tasks:FORMAT",
)
