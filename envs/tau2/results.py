"""τ²'s recorded conversations as pivotgym trajectories: its simulation results (the
JSON ``tau2 run`` writes), and the message history a task may start from.

Each simulation becomes one trajectory of env ``tau2``: a system message with the
domain's policy, then τ²'s messages (the orchestrator's greeting first) in pivotgym's
chat format (:mod:`pivotgym.envs.tau2.messages`). Its task is the one embedded in the
results file, so it is scored as it was run; τ²'s recorded verdict and termination
reason go to ``metadata``. A file of another shape, or of another τ² version with
fields pivotgym does not know, is a one-line error naming the file and field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.tau2.domain import get_domain
from pivotgym.envs.tau2.env import SYSTEM_PROMPT
from pivotgym.envs.tau2.messages import from_tau2, history_messages
from pivotgym.envs.tau2.tasks import Tau2Task, task_from_json
from pivotgym.errors import DataError

TOP = {"timestamp", "info", "tasks", "simulations"}
SIMULATION = {
    "id",
    "task_id",
    "timestamp",
    "start_time",
    "end_time",
    "duration",
    "termination_reason",
    "agent_cost",
    "user_cost",
    "reward_info",
    "messages",
    "trial",
    "seed",
}


def load_results(path: str | Path) -> list[Trajectory]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read τ² results: {exc}", file=path) from None
    try:
        return _convert(data, path)
    except DataError as exc:
        raise DataError(exc.problem, file=path, field=exc.field) from None


def _known(data: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(data) - keys)
    if unknown:
        raise DataError(
            f"unknown field {unknown[0]!r}: a results file of another τ² version?",
            field=f"{where}.{unknown[0]}" if where else unknown[0],
        )


def _convert(data: Any, path: Path) -> list[Trajectory]:
    if not isinstance(data, dict):
        raise DataError("must be a τ² results object")
    _known(data, TOP, "")
    try:
        name = data["info"]["environment_info"]["domain_name"]
    except (KeyError, TypeError):
        raise DataError("missing", field="info.environment_info.domain_name") from None
    domain = get_domain(name)
    tasks = {}
    for i, t in enumerate(data.get("tasks") or []):
        task = task_from_json({"domain": domain.name, "task": t}, f"tasks[{i}]", f"tasks[{i}]")
        tasks[task.model.id] = task
    system = {"role": "system", "content": SYSTEM_PROMPT.format(policy=domain.policy)}
    out = []
    for i, sim in enumerate(data.get("simulations") or []):
        at = f"simulations[{i}]"
        if not isinstance(sim, dict):
            raise DataError("must be an object", field=at)
        _known(sim, SIMULATION, at)
        task = tasks.get(sim.get("task_id"))
        if task is None:
            raise DataError(
                f"task {sim.get('task_id')!r} is not in the file's tasks", field=f"{at}.task_id"
            )
        messages = from_tau2(sim.get("messages"), f"{at}.messages")
        out.append(
            Trajectory(
                id=f"{domain.name}/{task.model.id}/{sim.get('id')}",
                env="tau2",
                task=task.to_json(),
                messages=[system, *messages],
                metadata={
                    "source": path.name,
                    "termination_reason": sim.get("termination_reason"),
                    "reward_info": sim.get("reward_info"),
                },
                tools=domain.tools,
            )
        )
    return out


def history_trajectory(task: Tau2Task) -> Trajectory:
    """The conversation ``task`` starts from (its ``initial_state.message_history``) as a
    trajectory, so that a reset can reach any turn of it."""
    history = history_messages(task)
    if not history:
        raise DataError("the task has no message history", field=f"{task.name}: initial_state")
    domain = get_domain(task.domain)
    return Trajectory(
        id=f"{task.name}/history",
        env="tau2",
        task=task.to_json(),
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT.format(policy=domain.policy)},
            *history,
        ],
        metadata={"source": "initial_state.message_history"},
        tools=domain.tools,
    )
