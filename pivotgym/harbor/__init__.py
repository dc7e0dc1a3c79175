"""Harbor's task format (a folder with ``instruction.md``, ``task.toml``, ``tests/``), its
grader, which runs the task's ``test.sh`` on a copy of the episode's end state, and
:class:`~pivotgym.harbor.env.HarborEnv`, the tool env over a sandbox with Harbor tasks.
Built on the core and the sandboxes."""
