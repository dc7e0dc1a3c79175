"""pivotgym: turn-level RL (PivotRL) on SFT agent trajectories.

The public surface of the foundation::

    import pivotgym
    trajectories = pivotgym.load_trajectories("terminal", split="train")
    env = pivotgym.make("terminal", sandbox="bwrap")
    obs, info = env.reset(options={"trajectory": trajectories[0], "turn": 2})
    branches = env.fork(4)
"""

from pivotgym.core.env import AsyncEnv, run_sync
from pivotgym.core.registry import (
    EnvSpec,
    declare_entry_points,
    load_tasks,
    load_trajectories,
    make,
    register,
    registered,
)
from pivotgym.core.task import Task
from pivotgym.core.trajectory import Trajectory, iter_trajectories, save_trajectories
from pivotgym.errors import DataError, DivergenceError, InfraError, PivotgymError
from pivotgym.harbor.task import load_task

declare_entry_points()

__version__ = "0.1.0"
__all__ = [
    "AsyncEnv",
    "DataError",
    "DivergenceError",
    "EnvSpec",
    "InfraError",
    "PivotgymError",
    "Task",
    "Trajectory",
    "iter_trajectories",
    "load_task",
    "load_tasks",
    "load_trajectories",
    "make",
    "register",
    "registered",
    "run_sync",
    "save_trajectories",
]
