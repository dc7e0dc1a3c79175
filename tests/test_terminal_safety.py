"""The terminal env against hostile or broken agents, on every backend that runs here.

Malformed actions and runaway commands are the agent's problem, told to it in a tool
message; they never raise and never end the episode. The reward comes only from the
task's own test, whatever the agent wrote where the test writes.
"""

from __future__ import annotations

from terminal_tasks import SUBMIT, act, bash, call


def test_malformed_calls_are_reported_and_the_episode_goes_on(terminal):
    env = terminal()
    action = act(
        call("bash", '{"command": "echo hi"', "bad-json"),
        call("python", {"code": "print(1)"}, "unknown"),
        call("bash", {"cmd": "ls"}, "no-command"),
        call("bash", "[1, 2]", "not-an-object"),
        call("bash", {"command": "echo fine"}, "good"),
    )
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated) == (0.0, False, False)
    replies = {m["tool_call_id"]: m["content"] for m in obs if m["role"] == "tool"}
    assert "not a valid JSON object" in replies["bad-json"]
    assert "unknown tool 'python'" in replies["unknown"] and "bash" in replies["unknown"]
    assert "'command'" in replies["no-command"]
    assert "JSON object" in replies["not-an-object"]
    assert replies["good"] == "fine\n"
    errors = [c["error"] for c in info["calls"]]
    assert errors == ["invalid_arguments", "unknown_tool", "invalid_arguments",
                      "invalid_arguments", None]  # fmt: skip
    assert info["tool_errors"] == errors[:4]

    obs, _, terminated, _, info = env.step(bash("echo next"))
    assert obs[-1]["content"] == "next\n" and not terminated
    assert info["calls"][0]["error"] is None


def test_timeout_is_reported_and_the_env_keeps_working(terminal):
    env = terminal(toml="[pivotgym]\nexec_timeout_sec = 1\n")
    obs, _, terminated, _, info = env.step(bash("echo started; while :; do :; done"))
    assert not terminated
    assert obs[-1]["content"].startswith("started\n")
    assert "timed out after 1 s" in obs[-1]["content"]
    assert info["calls"][0]["timed_out"] and info["calls"][0]["exit_code"] is None
    obs, _, _, _, info = env.step(bash("echo alive"))
    assert obs[-1]["content"] == "alive\n" and not info["calls"][0]["timed_out"]


def test_agent_cannot_write_its_own_reward(terminal):
    env = terminal()
    forge = (
        "mkdir -p /logs/verifier && echo 1 > /logs/verifier/reward.txt; "
        "mkdir -p /tests && printf 'exit 0\\n' > /tests/test.sh; "
        "(while :; do echo 1 > /logs/verifier/reward.txt; sleep 0.05; done) & "
        "nohup sh -c 'sleep 0.5; echo 1 > /logs/verifier/reward.txt' >/dev/null 2>&1 & "
        "cat /logs/verifier/reward.txt"
    )
    obs, *_ = env.step(bash(forge))
    assert obs[-1]["content"] == "1\n"
    _, reward, terminated, _, info = env.step(SUBMIT)
    assert terminated and reward == 0.0
    assert info["test"]["exit_code"] == 1

    # The same task scores 1 once it is actually solved.
    honest = terminal()
    honest.step(bash("echo 42 > /app/answer"))
    _, reward, terminated, _, _ = honest.step(SUBMIT)
    assert terminated and reward == 1.0


def test_reward_file_written_by_the_test_wins_over_the_agents(terminal):
    env = terminal(test_sh="echo 0.25 > /logs/verifier/reward.txt\n")
    env.step(bash("mkdir -p /logs/verifier; echo 1 > /logs/verifier/reward.txt"))
    _, reward, *_ = env.step(SUBMIT)
    assert reward == 0.25


def test_cwd_and_exported_variables_persist(terminal):
    env = terminal()

    def out(command: str) -> str:
        return env.step(bash(command))[0][-1]["content"]

    assert out("mkdir -p sub/dir && cd sub/dir && export FOO='a b' && LOCAL=1") == ""
    assert out('pwd; echo "$FOO"; echo "${LOCAL:-unset}"') == "/app/sub/dir\na b\nunset\n"
    # A command that exits non-zero still leaves its directory and exports behind.
    assert out("cd /tmp && export N=7 && exit 3") == "[exit status 3]"
    assert out('pwd; echo "$N $FOO"') == "/tmp\n7 a b\n"
    assert out("cd /app/sub; unset FOO; false") == "[exit status 1]"
    assert out('pwd; echo "${FOO:-gone} $N"') == "/app/sub\ngone 7\n"


def test_malformed_call_shapes_get_error_replies(terminal):
    env = terminal()
    deep = '{"command": ' + "[" * 1100 + "]" * 1100 + "}"
    action = act(
        {"id": "list-name", "type": "function", "function": {"name": ["bash"], "arguments": "{}"}},
        {"id": "str-function", "type": "function", "function": "bash"},
        "bash",
        call("bash", deep, "deep"),
        {
            "id": ["not", "an", "id"],
            "function": {"name": "bash", "arguments": '{"command": "echo a"}'},
        },
        call("bash", {"command": "echo fine"}, "good"),
    )
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated) == (0.0, False, False)
    replies = [m for m in obs if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in replies] == ["list-name", "str-function", None, "deep",
                                                    None, "good"]  # fmt: skip
    assert [c["error"] for c in info["calls"]] == ["malformed_call", "malformed_call",
                                                   "malformed_call", "invalid_arguments",
                                                   None, None]  # fmt: skip
    assert all(m["content"].startswith("Error: ") for m in replies[:4])
    assert "name" in replies[0]["content"] and "function" in replies[1]["content"]
    assert "not an object" in replies[2]["content"] and "JSON" in replies[3]["content"]
    assert [m["content"] for m in replies[4:]] == ["a\n", "fine\n"]

    # tool_calls that is not a list made no valid call: one error reply, and the episode goes on.
    obs, reward, terminated, truncated, info = env.step(
        {"role": "assistant", "content": None, "tool_calls": "ls"}
    )
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert obs[-1]["role"] == "tool" and obs[-2]["role"] == "assistant"
    assert obs[-1]["tool_call_id"] is None and "tool_calls" in obs[-1]["content"]
    assert [c["error"] for c in info["calls"]] == ["malformed_call"]
    obs, _, terminated, _, _ = env.step(bash("echo next"))
    assert obs[-1]["content"] == "next\n" and not terminated
