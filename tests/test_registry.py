"""Registry and plugins: third-party environments are found like the built-in one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pivotgym
from pivotgym.cli import main
from pivotgym.errors import DataError

PLUGIN = textwrap.dedent("""
    from pivotgym import EnvSpec
    from pivotgym.harbor.env import HarborEnv

    class EchoEnv(HarborEnv):
        name = "echo"
        tools = [{"type": "function", "function": {"name": "shout", "parameters": {
            "type": "object", "properties": {"text": {"type": "string"}}}}}]

        async def call_tool(self, name, arguments):
            result = await self.sandbox.exec(["sh", "-c", 'printf %s "$1" | tr a-z A-Z', "sh",
                                              arguments.get("text", "")])
            return result.output, {"exit_code": result.exit_code}

    ENV = EnvSpec(name="echo", entry_point=EchoEnv, description="shouts back")
""")


def plugin_path(tmp_path: Path) -> Path:
    """An installed distribution that declares an env in the pivotgym.envs group."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "echoplugin.py").write_text(PLUGIN)
    info = tmp_path / "echoplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echoplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pivotgym.envs]\necho = echoplugin:ENV\n")
    return tmp_path


def run_python(code: str, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_entry_point_plugin_is_discovered_made_and_listed(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import gymnasium, pivotgym
        from taskdirs import make_task
        from pathlib import Path
        assert "echo" in pivotgym.registered() and "terminal" in pivotgym.registered()
        task = pivotgym.load_task(make_task(Path({str(tmp_path)!r}), "t"))
        env = gymnasium.make("pivotgym/Echo-v0", tasks=[task])
        env.reset(seed=0)
        call = {{"name": "shout", "arguments": '{{"text": "hi"}}'}}
        action = {{"role": "assistant", "content": None,
                  "tool_calls": [{{"id": "a", "type": "function", "function": call}}]}}
        obs, *_ = env.step(action)
        print(obs[-1]["content"])
        env.close()
        from pivotgym.cli import main
        main(["envs"])
    """)
    path = plugin_path(tmp_path / "site")
    result = run_python(code, Path(f"{path}{os.pathsep}{Path(__file__).parent}"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "HI"
    assert "pivotgym/Echo-v0" in result.stdout and "shouts back" in result.stdout


def test_register_in_process_and_make_by_name(tmp_path: Path) -> None:
    namespace: dict = {}
    exec(PLUGIN.replace('name="echo"', 'name="echo-local"'), namespace)
    pivotgym.register(namespace["ENV"])
    with pytest.raises(DataError, match="already registered"):
        pivotgym.register(pivotgym.EnvSpec(name="echo-local", entry_point="x:y"))
    assert "echo-local" in pivotgym.registered()
    env = pivotgym.make("echo-local", tasks=[])
    env.close()


def test_unknown_environment_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"unknown environment 'nope'.*terminal"):
        pivotgym.make("nope")


def test_cli_exits_2_with_one_line_on_bad_input(capsys) -> None:
    assert main(["demo", "--env", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown environment 'nope'" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["bogus-command"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("argv", [["--branches", "0"], ["--turn", "99"], ["--turn", "-1"]])
def test_demo_rejects_bad_counts_with_one_line(argv, capsys) -> None:
    turns = max(t.num_turns for t in pivotgym.load_trajectories("terminal", split="train"))
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pivotgym: error: ") and err.count("\n") == 1
    if argv[0] == "--branches":
        assert "--branches: must be at least 1, got 0" in err
    else:
        assert f"--turn: {argv[1]} is out of range" in err
        assert f"has {turns} assistant turns" in err and f"0..{turns - 2}" in err


def test_cli_lists_environments_and_backends(capsys) -> None:
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "pivotgym/Terminal-v0" in out and "bwrap" in out and "docker" in out
