"""The env core: what every world, task format and method is written against.

Environments (:mod:`~pivotgym.core.env`, :mod:`~pivotgym.core.tool_env`), worlds
(:mod:`~pivotgym.core.world`), reset-to-turn replay (:mod:`~pivotgym.core.replay`),
graders, tasks, trajectories and their candidate turns, the env registry and the cost
ledger. It imports nothing of pivotgym but :mod:`pivotgym.errors`; the registry names
Harbor's task format as the default by import path, loaded only when a spec uses it.
"""
