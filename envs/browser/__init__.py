"""The browser environment: MiniWoB++ and web apps of our own in a caged Chromium,
BrowserGym's actions as tools, and reset to any turn and fork of browser and backend.

Registered through the ``pivotgym.envs`` entry point ``browser = pivotgym.envs.browser:ENV``.
"""

from pivotgym.core.registry import EnvSpec, Provided

BUILD = "pivotgym.envs.browser.build"

ENV = EnvSpec(
    name="browser",
    entry_point="pivotgym.envs.browser.env:BrowserEnv",
    description="Web tasks in Chromium: MiniWoB++ pages and local apps with their databases",
    # The apps' splits ship with the project; MiniWoB++'s are made from its package on
    # first use (pivotgym.envs.browser.build).
    trajectories=Provided(("train", "miniwob-train"), f"{BUILD}:provide_trajectories"),
    tasks=Provided(("test", "ood", "miniwob-test"), f"{BUILD}:provide_tasks"),
    candidate_rule="pivotgym.core.candidates:calls_a_tool",
    verifier="browser",
    task_format="pivotgym.envs.browser.tasks:FORMAT",
    expert="pivotgym.envs.browser.expert:demonstrate",
)
