"""τ²-bench's airline, retail and telecom domains as a pivotgym environment.

Registered through the ``pivotgym.envs`` entry point ``tau2 = pivotgym.envs.tau2:ENV``;
it needs τ²'s package (``pip install 'pivotgym[tau2]'``), imported only when an env or
task is made, so that listing environments works without it. Its splits (τ²'s train and
test tasks, and the expert's trajectories of the train tasks) are made from τ²'s
package the first time they are asked for (:mod:`pivotgym.envs.tau2.build`).
"""

from pivotgym.core.registry import EnvSpec, Provided

BUILD = "pivotgym.envs.tau2.build"

ENV = EnvSpec(
    name="tau2",
    entry_point="pivotgym.envs.tau2.env:Tau2Env",
    description="τ²-bench's own domains (airline, retail, telecom) from its package",
    trajectories=Provided(("train",), f"{BUILD}:provide_trajectories"),
    tasks=Provided(("train", "test"), f"{BUILD}:provide_tasks"),
    # The first assistant turn is τ²'s fixed greeting, not the agent's act.
    candidate_rule="pivotgym.envs.tau2.env:agent_turns",
    verifier="tau2",
    task_format="pivotgym.envs.tau2.tasks:FORMAT",
)
