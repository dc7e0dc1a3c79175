"""The sandbox against a hostile policy, on every backend: one test per attack.

The attacker's only channel is what the RL loop gives a model: the ``bash`` tool's
``command`` through ``pivotgym.make("terminal", sandbox=...)``, ``reset`` and ``step``
(and, for the execution verifier, the state a sampled action leaves in its branch).
Each test states the promise it checks; ``docs/security.md`` lists them all.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
import uuid
from pathlib import Path

import pytest
from sandbox_checks import leftovers
from terminal_tasks import BACKENDS, SUBMIT, act, bash, call, make_task

import pivotgym
from pivotgym.core.candidates import candidates
from pivotgym.core.replay import SnapshotCache
from pivotgym.core.trajectory import Trajectory
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.envs.terminal.verifier import Execution
from pivotgym.errors import InfraError
from pivotgym.verifiers import restore

# What a sandbox may hold: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID.
ALLOWED_CAPS = 0xFB
PYTHON_TEST = textwrap.dedent(
    """\
    out=/logs/verifier
    mkdir -p "$out"; echo 0 > "$out/reward.txt"
    set -e
    python3 - <<'PYCHECK'
    import pathlib
    assert pathlib.Path('answer').read_text().strip() == '42'
    PYCHECK
    echo 1 > "$out/reward.txt"
    """
)


def out(env: TerminalEnv, command: str) -> str:
    obs, _, terminated, truncated, info = env.step(bash(command))
    assert info["infra_error"] is None and not (terminated or truncated), info
    return obs[-1]["content"]


def submit(env: TerminalEnv) -> tuple[float, dict]:
    _, reward, terminated, _, info = env.step(SUBMIT)
    assert terminated and info["infra_error"] is None, info
    return reward, info


# ------------------------------------------------------------------ the host's root


def test_no_privilege_reaches_the_host(terminal):
    """Capabilities are the file-ownership set only, under seccomp and no_new_privs;
    bwrap's root is an unprivileged user outside its namespace."""
    env = terminal()
    status = out(env, "cat /proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    for name in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(fields[name], 16) & ~ALLOWED_CAPS == 0, (name, fields[name])
    assert fields["Seccomp"].strip() == "2" and fields["NoNewPrivs"].strip() == "1"
    if env.backend.name == "bwrap" and os.geteuid() == 0:
        inside, outside, _ = out(env, "cat /proc/self/uid_map").split()
        assert inside == "0" and outside != "0"


def test_read_only_binds_cannot_be_remounted_or_written(terminal):
    """The finding: `mount -o remount,bind,rw /usr` made host files as host root, and a
    planted /usr/local/bin program ran as the driver on its next exec."""
    probe = f".pivotgym-probe-{uuid.uuid4().hex[:8]}"
    targets = [Path("/usr") / probe, Path("/etc/ssl") / probe, Path("/usr/local/bin") / probe]
    env = terminal()
    try:
        for target in targets:
            where = target.parent
            text = out(env, f"mount -o remount,bind,rw {where}; touch {target}; echo $?")
            assert text.strip().endswith("1"), text
        text = out(env, "ls -a /usr /etc/ssl /usr/local/bin")
        assert probe not in text
        env.fork(1)[0].close()  # the driver copies state with host programs
        out(env, "true")
    finally:
        planted = [t for t in targets if t.exists()]
        for target in planted:
            target.unlink()
    assert planted == []


def test_limits_cannot_be_raised_from_inside(terminal):
    """The finding: mounting the cgroup file system raised the sandbox's own memory and
    pids limits (and left child groups nobody removed)."""
    limits = "[environment]\nmemory_mb = 96\nstorage_mb = 64\n[pivotgym]\nmax_processes = 40\n"
    env = terminal(toml=limits)
    attack = (
        "mkdir -p /tmp/cg /tmp/cgp /tmp/cg2; "
        "mount -t cgroup -o memory none /tmp/cg && echo MOUNTED memory && "
        "echo 2147483648 > /tmp/cg/memory.limit_in_bytes && mkdir /tmp/cg/child; "
        "mount -t cgroup -o pids none /tmp/cgp && echo MOUNTED pids && "
        "echo 4096 > /tmp/cgp/pids.max; "
        "mount -t cgroup2 none /tmp/cg2 && echo MOUNTED v2 && echo max > /tmp/cg2/pids.max; "
        "echo 2147483648 > /sys/fs/cgroup/memory/memory.limit_in_bytes; "
        "echo max > /sys/fs/cgroup/pids.max; ulimit -Hu unlimited; true"
    )
    assert "MOUNTED" not in out(env, attack)
    hog = out(env, "python3 -c \"x = b'a' * (300 << 20); print('survived')\"")
    assert "survived" not in hog.splitlines() and hog.endswith("[exit status 137]"), hog
    forks = out(env, "python3 -c \"import os, time\nn = 0\ntry:\n  while n < 200:\n"
                     "    if os.fork() == 0:\n      time.sleep(5); os._exit(0)\n    n += 1\n"
                     "except OSError: pass\nprint(n)\"")  # fmt: skip
    assert int(forks.split()[-1]) < 40


def test_the_drivers_environment_and_host_paths_stay_outside(terminal, monkeypatch):
    """The finding: /proc/1/environ printed the driver's environment (an API key with it)
    into the tool output; /proc/1/cmdline and mountinfo showed host paths."""
    secret = f"sk-pivotgym-{uuid.uuid4().hex}"
    monkeypatch.setenv("PIVOTGYM_TEST_API_KEY", secret)
    env = terminal()
    seen = out(
        env,
        "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done; "
        "cat /proc/self/mountinfo /proc/1/mountinfo",
    )
    assert secret not in seen and "PIVOTGYM_TEST_API_KEY" not in seen
    if env.backend.store.quota:
        assert str(env.backend.store.runtime) not in seen


# --------------------------------------------------------------------- disk, output


def test_the_disk_quota_holds_for_the_whole_state(terminal):
    """The finding: three 100 MB files passed a 128 MB storage_mb (only one file was
    capped), and so did 30,000 empty files."""
    env = terminal(toml="[environment]\nstorage_mb = 32\n[pivotgym]\nmax_files = 2000\n")
    if not env.backend.store.quota:
        pytest.skip("a disk quota needs root (a size-limited tmpfs per sandbox)")
    out(env, "for d in /app /tmp /root /dev/shm; do head -c 20M /dev/zero > $d/big; done")
    used = out(env, "du -skc /app /tmp /root /dev/shm | tail -1")
    assert int(used.split()[0]) <= 32 * 1024
    out(env, "rm -f /app/big /tmp/big /root/big /dev/shm/big")
    made = out(env, "i=0; while [ $i -lt 30000 ] && : > /tmp/e$i; do i=$((i+1)); done; echo $i")
    assert 1000 < int(made.split()[-1]) <= 2000


def test_output_written_past_the_harness_goes_nowhere(terminal):
    """The finding: writing to PID 1's stdout grew dockerd's log on the host without bound."""
    env = terminal()
    obs, _, _, _, info = env.step(bash("head -c 50000000 /dev/zero | tr '\\0' A > /proc/1/fd/1"))
    assert info["infra_error"] is None and len(obs[-1]["content"]) < 20_000
    if env.backend.name == "docker":
        import docker

        container = docker.from_env().api.inspect_container(env.sandbox.id)
        assert container["HostConfig"]["LogConfig"]["Type"] == "none"
        assert container["LogPath"] == ""


def test_dev_is_read_only(terminal):
    env = terminal()
    text = out(env, "echo x > /dev/pwned; echo x > /dev/null && echo null-ok; ls /dev")
    assert "null-ok" in text and "pwned" not in text.split("null-ok")[1]


# ------------------------------------------------------------------ the harness


def test_no_process_survives_a_killed_wrapper(terminal):
    """The finding: killing the exec's wrapper shell let a `setsid nohup` child run on
    into later steps."""
    env = terminal()
    # Every ancestor of the command up to the namespace's init, the outermost first, so
    # that no wrapper lives on to clean up after it.
    ancestors = 'a=""; p=$PPID; while [ "$p" -gt 1 ]; do a="$p $a"; p=$(ps -o ppid= -p "$p"); done'
    attack = f"setsid nohup sleep 1001 >/dev/null 2>&1 & sleep 0.2; {ancestors}; kill -9 $a"
    env.step(bash(attack))
    assert "sleep 1001" not in out(env, "ps -e -o args")
    assert leftovers("sleep 1001") == []


def test_the_harness_does_not_run_the_sandboxs_binaries_it_could_replace(terminal):
    """The finding: replacing the container's /bin/sh defeated the timeout and made the
    task's test pass for a task not done."""
    env = terminal(toml="[pivotgym]\nexec_timeout_sec = 2\n")
    replaced = out(
        env,
        "printf '#!/bin/sh\\nexit 0\\n' > /tmp/fake; chmod +x /tmp/fake; "
        "for b in /bin/sh /bin/bash /usr/bin/timeout /usr/bin/python3 /usr/bin/test; do "
        "cp /tmp/fake $b 2>/dev/null && echo replaced $b; done; echo end",
    )
    assert "replaced" not in replaced
    obs, _, _, _, info = env.step(bash("sleep 30"))
    assert info["calls"][0]["timed_out"]
    reward, _ = submit(env)
    assert reward == 0.0


def test_a_module_in_the_workdir_cannot_shadow_the_graders(terminal):
    """The finding: `pathlib.py` in the workdir made the test's Python exit 0 (reward 1.0
    for a task not done), because the grader ran with the workdir first on sys.path."""
    env = terminal(test_sh=PYTHON_TEST)
    out(env, "printf 'import os\\nos._exit(0)\\n' > pathlib.py")
    reward, info = submit(env)
    assert reward == 0.0
    assert any("pathlib" in note for note in info["test"]["tampering"])
    honest = terminal(test_sh=PYTHON_TEST)
    out(honest, "echo 42 > answer")
    assert submit(honest)[0] == 1.0


def test_a_user_site_hook_cannot_reach_the_grader(terminal):
    env = terminal(test_sh=PYTHON_TEST)
    out(
        env,
        "d=$(python3 -m site --user-site); mkdir -p $d && "
        "echo 'import os; os._exit(0)' > $d/zz.pth; "
        "echo 'import os; os._exit(0)' > sitecustomize.py",
    )
    assert submit(env)[0] == 0.0


def test_persisted_exports_do_not_reach_the_grader(terminal):
    """PATH, BASH_ENV, LD_PRELOAD and Python's variables the agent exports shape its own
    later commands, never the grader's."""
    env = terminal(test_sh="grep -qx 42 /app/answer\n")
    attack = (
        "mkdir -p /tmp/evil && printf '#!/bin/sh\\nexit 0\\n' > /tmp/evil/grep && "
        "chmod +x /tmp/evil/grep && printf 'exit 0\\n' > /tmp/evil.sh && "
        "export PATH=/tmp/evil:$PATH BASH_ENV=/tmp/evil.sh ENV=/tmp/evil.sh "
        "LD_PRELOAD=/tmp/evil.so PYTHONPATH=/tmp/evil PYTHONSTARTUP=/tmp/evil.sh"
    )
    out(env, attack)
    assert out(env, "command -v grep") == "/tmp/evil/grep\n"  # the agent's own shell
    assert submit(env)[0] == 0.0


def test_a_repository_cannot_run_programs_in_the_grader(terminal):
    """A planted `core.fsmonitor` (or hook, pager, external diff) would run inside the
    grader's git and could write the reward file before killing the test."""
    test_sh = "git -C /app status --porcelain >/dev/null\ngrep -qx 42 /app/answer\n"
    env = terminal(test_sh="out=/logs/verifier; mkdir -p $out; echo 0 > $out/reward.txt\n"
                           "set -e\n" + test_sh + "echo 1 > $out/reward.txt\n")  # fmt: skip
    hook = "echo 1 > /logs/verifier/reward.txt; kill -9 $PPID; sleep 5"
    out(env, f"git init -q /app && git -C /app config core.fsmonitor '{hook}' && "
             "git -C /app config core.pager 'touch /tmp/ran'")  # fmt: skip
    reward, info = submit(env)
    assert reward == 0.0
    assert any("core.fsmonitor" in note for note in info["test"]["tampering"])


GIT_LOG_TEST = (
    "out=/logs/verifier; mkdir -p $out; echo 0 > $out/reward.txt\nset -e\n"
    'git -C /app log --oneline | grep -q "answer is 42"\n[ "$(cat /app/answer)" = 42 ]\n'
    "echo 1 > $out/reward.txt\n"
)
# A commit with a signature, so that `log.showSignature` makes git run `gpg.program`,
# the agent's: it writes the reward and kills the test.
SIGNED = (
    "cd /app && git init -q && echo 41 > answer && git add answer && "
    'git commit -qm "answer is 41" && tree=$(git write-tree) && parent=$(git rev-parse HEAD) && '
    "printf 'tree %s\\nparent %s\\nauthor a <a@b> 1700000000 +0000\\n"
    "committer a <a@b> 1700000000 +0000\\ngpgsig -----BEGIN PGP SIGNATURE-----\\n \\n x\\n "
    "-----END PGP SIGNATURE-----\\n\\nwip\\n' $tree $parent > /tmp/c && "
    "c=$(git hash-object -t commit -w /tmp/c) && git update-ref HEAD $c && "
    "printf '#!/bin/sh\\nmkdir -p /logs/verifier; echo 1 > /logs/verifier/reward.txt; "
    "kill -9 -1\\n' > .git/v && chmod +x .git/v && git config gpg.program /app/.git/v && "
    "git config log.showSignature true && "
    "printf '[core] fsmonitor = /app/.git/v\\n' >> .git/config"
)


def test_a_signature_program_cannot_run_in_the_graders_git_log(terminal):
    """Found in review: `gpg.program` with `log.showSignature` made the grader's own
    `git log` run the agent's program, which wrote reward 1 and killed the test."""
    env = terminal(test_sh=GIT_LOG_TEST)
    out(env, SIGNED)
    reward, info = submit(env)
    assert reward == 0.0 and info["test"]["exit_code"] == 1, info
    notes = " ".join(info["test"]["tampering"])
    for key in ("gpg.program", "log.showsignature", "core.fsmonitor"):
        assert key in notes, notes


def test_a_test_that_fails_or_is_killed_scores_zero_whatever_its_reward_file(terminal):
    env = terminal(test_sh="echo 1 > /logs/verifier/reward.txt\nexit 3\n")
    out(env, "echo 42 > /app/answer")
    assert submit(env)[0] == 0.0
    killed = terminal(test_sh="echo 1 > /logs/verifier/reward.txt\nkill -9 $$\n")
    assert submit(killed)[0] == 0.0


def test_a_full_disk_leaves_the_grader_room_and_is_the_agents_failure(terminal):
    """Found in review: a workdir filled to the quota left no room for the tests, and
    grading raised (bwrap) or passed for an infrastructure failure (docker)."""
    env = terminal(toml="[environment]\nstorage_mb = 32\n[pivotgym]\nmax_files = 3000\n")
    fill = (
        "head -c 40M /dev/zero > /app/big; mkdir /app/many; cd /app/many; "
        "i=0; while [ $i -lt 5000 ] && : > f$i; do i=$((i+1)); done; echo made $i"
    )
    text = out(env, fill)
    assert "made" in text
    reward, info = submit(env)
    assert reward == 0.0 and info["test"]["exit_code"] == 1, info


def test_memory_kept_in_files_or_ipc_objects_does_not_kill_the_sandbox(terminal):
    """Found in review: System V shared memory outlived its exec in a container and,
    with files, ran its PID 1 out of memory; a full disk larger than the memory limit
    starved every later exec. Neither can be an infrastructure failure."""
    env = terminal(toml="[environment]\nmemory_mb = 128\nstorage_mb = 256\n")
    shm = (
        'python3 -c "import ctypes; l = ctypes.CDLL(None); l.shmat.restype = ctypes.c_void_p\n'
        "for n in range(3):\n    i = l.shmget(0x1000 + n, 40 << 20, 0o1600)\n"
        '    ctypes.memset(l.shmat(i, None, 0), 1, 40 << 20)"'
    )
    out(env, shm)
    assert out(env, "ipcs -m | grep -c 0x0000100 || true").strip() == "0"
    out(env, "head -c 250M /dev/zero > /app/fill 2>/dev/null; true")
    for _ in range(3):
        assert out(env, "echo alive") == "alive\n"
    obs, _, _, _, info = env.step(bash("python3 -c \"x = b'a' * (400 << 20)\""))
    assert info["infra_error"] is None and info["calls"][0]["exit_code"] == 137
    assert out(env, "echo still") == "still\n"


def test_one_turn_runs_at_most_max_calls_and_an_episode_ends_at_its_timeout(terminal):
    env = terminal(toml="[agent]\ntimeout_sec = 2.0\n")
    many = act(*(call("bash", {"command": f"echo {i}"}, f"c{i}") for i in range(20)))
    obs, _, _, truncated, info = env.step(many)
    errors = [c["error"] for c in info["calls"]]
    assert errors == [None] * 16 + ["too_many_calls"] * 4 and not truncated
    obs, reward, terminated, truncated, info = env.step(bash("sleep 2.5"))
    assert truncated and not terminated and info["agent_timeout"] and "test" in info


def test_writes_to_the_graders_folders_are_discarded_and_reported(terminal):
    env = terminal()
    out(env, "mkdir -p /logs/verifier /tests && echo 1 > /logs/verifier/reward.txt && "
             "printf 'exit 0\\n' > /tests/test.sh")  # fmt: skip
    reward, info = submit(env)
    assert reward == 0.0 and info["test"]["exit_code"] == 1
    notes = " ".join(info["test"]["tampering"])
    assert "/logs/verifier/reward.txt" in notes and "/tests/test.sh" in notes


# -------------------------------------------------- infrastructure failures, honestly


# A chain of folders whose path is longer than PATH_MAX: the host's copy tools cannot
# take it, and a tree this deep would exhaust a recursive walk.
TOO_DEEP = (
    "python3 -c \"import os\nfor _ in range(25):\n    os.mkdir('d' * 200); "
    "os.chdir('d' * 200)\nopen('f', 'w').close()\""
)


def test_an_uncopyable_end_state_is_a_failed_task_not_an_infrastructure_failure(terminal):
    env = terminal()
    out(env, TOO_DEEP + "; echo 42 > /app/answer")
    reward, info = submit(env)
    assert reward == 0.0 and "cannot be graded" in info["test"]["output"]


def test_a_command_cannot_pass_for_an_infrastructure_failure(terminal):
    """The finding: `echo 'bwrap: fake'; exit 1`, or any command over 128 KiB, raised
    InfraError, which GRPO masks and evaluation leaves out of its denominator."""
    env = terminal()
    obs, _, _, _, info = env.step(bash("echo 'bwrap: fake'; exit 1"))
    assert info["infra_error"] is None
    assert info["calls"][0]["exit_code"] == 1 and obs[-1]["content"].startswith("bwrap: fake")
    obs, _, terminated, truncated, info = env.step(bash("echo " + "x" * 200_000))
    assert info["infra_error"] is None and not (terminated or truncated)
    assert info["calls"][0]["error"] == "invalid_arguments"
    assert "over the limit" in obs[-1]["content"]
    obs, _, _, _, info = env.step(bash("echo a\0b"))  # exec cannot pass a NUL byte
    assert info["infra_error"] is None and "NUL" in obs[-1]["content"]
    assert out(env, "echo still here") == "still here\n"


def test_dangerous_system_calls_are_refused(terminal):
    env = terminal()
    probe = textwrap.dedent(
        """
        import ctypes, errno, os, platform
        libc = ctypes.CDLL(None, use_errno=True)
        nr = {"x86_64": {"unshare": 272, "ptrace": 101, "keyctl": 250, "bpf": 321,
                         "perf_event_open": 298, "io_uring_setup": 425, "mount": 165,
                         "setns": 308, "userfaultfd": 323, "socket": 41},
              "aarch64": {"unshare": 97, "ptrace": 117, "keyctl": 219, "bpf": 280,
                          "perf_event_open": 241, "io_uring_setup": 425, "mount": 40,
                          "setns": 268, "userfaultfd": 282, "socket": 198}}[platform.machine()]
        calls = {"unshare": (0x10000000,), "ptrace": (16, os.getppid(), 0, 0),
                 "keyctl": (0, 0), "bpf": (0, 0, 0), "perf_event_open": (0, 0, -1, -1, 0),
                 "io_uring_setup": (1, 0), "mount": (b"none", b"/tmp", b"tmpfs", 0, 0),
                 "setns": (0, 0), "userfaultfd": (0,), "socket": (40, 1, 0)}
        for name, args in calls.items():
            ctypes.set_errno(0)
            result = libc.syscall(nr[name], *args)
            print(name, result, errno.errorcode.get(ctypes.get_errno(), "0"))
        """
    )
    text = out(env, f"python3 -c '{probe}'")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    assert len(rows) == 10, text
    for name, result, err in rows:
        assert result == "-1" and err in ("EPERM", "ENOSYS"), (name, result, err)


def test_proc_and_sys_settings_are_read_only(terminal):
    env = terminal()
    text = out(
        env,
        "for f in /proc/sys/vm/drop_caches /proc/sys/kernel/core_pattern /proc/sysrq-trigger "
        "/sys/kernel/mm/transparent_hugepage/enabled; do "
        "(printf x > $f) 2>/dev/null && echo WROTE $f; done; echo end",
    )
    assert "WROTE" not in text


def test_cpu_is_limited_to_the_tasks_share(terminal):
    """The finding: a fork bomb or four busy loops held both cores until the time out."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: a one-core share limits nothing")
    env = terminal()
    busy = textwrap.dedent(
        """
        import os, resource, time
        start = time.time()
        for _ in range(4):
            if os.fork() == 0:
                while time.time() - start < 2.0:
                    pass
                os._exit(0)
        for _ in range(4):
            os.wait()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        print((used.ru_utime + used.ru_stime) / (time.time() - start))
        """
    )
    share = float(out(env, f"python3 -c '{busy}'"))
    assert share < 1.35, share


def test_terminal_escape_sequences_reach_the_model_escaped(terminal):
    env = terminal()
    text = out(env, "printf '\\033[2J\\033]0;owned\\007secret\\rshown\\n'")
    assert "\x1b" not in text and "\x07" not in text
    assert text == "\u241b[2J\u241b]0;owned\u2407secret\rshown\n"
    flood = out(env, "head -c 100000 /dev/zero | tr '\\0' '\\1'")
    assert len(flood) < 16_384 + 100  # the limit, and the marker that says what was cut


# ------------------------------------------------ what the host reads of the state


def test_links_and_special_files_the_agent_plants_are_never_followed(terminal, tmp_path):
    secret_file = Path("/tmp") / f"pivotgym-secret-{uuid.uuid4().hex[:8]}"
    secret_file.write_text("host secret\n")
    try:
        env = terminal()
        out(env, f"ln -s {secret_file} leak; ln -s / rootlink; mkfifo fifo; "
                 "ln /etc/passwd hard 2>/dev/null; echo 42 > answer")  # fmt: skip
        (branch,) = env.fork(1)
        try:
            assert out(branch, "cat leak 2>&1; readlink leak").endswith(f"{secret_file}\n")
            assert "host secret" not in out(branch, "cat leak 2>/dev/null; echo")
        finally:
            branch.close()
        pivotgym.run_sync(env.sandbox.download("/app", tmp_path / "back"))
        assert (tmp_path / "back" / "leak").is_symlink()
        from pivotgym.envs.terminal.verifier import measure

        effect = measure(env.sandbox.host_dir("/app"), env.sandbox.host_dir("/run/pivotgym"),
                         "/app")  # fmt: skip
        assert effect.files["leak"] == f"l 777 -> {secret_file}"
        assert effect.files["fifo"].startswith("p ")
        assert submit(env)[0] == 1.0  # the grader copies and reads the tree as it is
    finally:
        secret_file.unlink()


def test_hostile_file_names_survive_forks_and_are_told_apart(terminal):
    env = terminal()
    make = (
        "printf x > ./-rf; printf x > ./--; printf x > \"$(printf 'a\\nb')\"; "
        "printf x > \"$(printf '\\377')\"; printf y > \"$(printf '\\376')\"; "
        "printf x > \"$(printf '%0200d' 0)\"; printf x > ' lead'; printf x > '*'"
    )
    out(env, make)
    listing = out(env, "ls -b -A")
    (branch,) = env.fork(1)
    try:
        assert out(branch, "ls -b -A") == listing
    finally:
        branch.close()
    from pivotgym.envs.terminal.verifier import measure

    files = measure(env.sandbox.host_dir("/app"), env.sandbox.host_dir("/run/pivotgym"),
                    "/app").files  # fmt: skip
    assert len([name for name in files if name not in ("README",)]) == 8
    assert files[os.fsdecode(b"\xff")] != files[os.fsdecode(b"\xfe")]


# ------------------------------------------------------------- the execution verifier


def _candidate(tmp_path: Path, setup: str, expert: str):
    """A one-turn-recorded trajectory: ``setup`` ran, then the expert's ``expert``."""
    task = make_task(tmp_path, name="verify")
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        act(call("bash", {"command": setup}, "c0")),
        {"role": "tool", "tool_call_id": "c0", "content": ""},
        act(call("bash", {"command": expert}, "c1")),
        {"role": "tool", "tool_call_id": "c1", "content": ""},
    ]
    return candidates([Trajectory("t", "terminal", str(task), messages)])[1]


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_measuring_an_effect_runs_none_of_the_agents_programs(tmp_path, backend_name):
    """The finding: a repository with `core.fsmonitor 'kill -9 -1'` killed the verifier's
    measurement (and ran arbitrary code in it), an infrastructure failure that GRPO masks."""
    # The index carries an fsmonitor extension, so even `git ls-files` asks the monitor;
    # the monitor kills everything once the setup is over.
    setup = (
        "git init -q && echo x > f && git add f && "
        "printf '#!/bin/sh\\n[ -e /app/armed ] && kill -9 -1\\nexit 1\\n' > .git/monitor && "
        "chmod +x .git/monitor && git config core.fsmonitor /app/.git/monitor && "
        "git update-index --fsmonitor 2>/dev/null; touch armed"
    )
    candidate = _candidate(tmp_path, setup, "echo 42 > answer")
    env = TerminalEnv(tasks=[], sandbox=backend_name, cache=SnapshotCache(), divergence="off")

    async def go():
        state = await restore(env, candidate)
        return await Execution().verify_many(
            state, [candidate.reference, bash("echo 41 > answer")], candidate.reference
        )

    try:
        same, other = pivotgym.run_sync(go())
    finally:
        env.close()
    assert not same.infra_error and same.reward == 1.0, same
    assert not other.infra_error and other.reward == 0.0 and "answer" in other.reason, other


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_slow_sample_scores_zero_and_masks_no_sibling(tmp_path, backend_name):
    """Found in review: an action of many slow calls ran the whole group past the
    verifier's limit, which masked every sample of the state."""
    candidate = _candidate(tmp_path, "true", "echo 42 > answer")
    env = TerminalEnv(tasks=[], sandbox=backend_name, cache=SnapshotCache())
    slow = act(*(call("bash", {"command": "sleep 2"}, f"s{i}") for i in range(4)))

    async def go():
        state = await restore(env, candidate)
        verifier = Execution(timeout_s=30, action_timeout_s=3)
        return await verifier.verify_many(state, [slow, candidate.reference], candidate.reference)

    try:
        late, expert = pivotgym.run_sync(go())
    finally:
        env.close()
    assert not late.infra_error and late.reward == 0.0 and "ran past" in late.reason
    assert not expert.infra_error and expert.reward == 1.0


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_verdicts_on_undecodable_file_names_write_as_json(tmp_path, backend_name):
    """Found in review: a file name that is not UTF-8 put a lone surrogate into a
    verdict's reason, and writing the profile's JSONL raised."""
    candidate = _candidate(tmp_path, "true", "echo 42 > answer")
    env = TerminalEnv(tasks=[], sandbox=backend_name, cache=SnapshotCache())

    async def go():
        state = await restore(env, candidate)
        odd = bash("echo 42 > answer; touch \"$(printf 'x\\377')\"")
        return await Execution().verify_many(state, [odd], candidate.reference)

    try:
        (verdict,) = pivotgym.run_sync(go())
    finally:
        env.close()
    assert verdict.reward == 0.0 and "x\\xff" in verdict.reason
    json.dumps(verdict.reason, ensure_ascii=False).encode("utf-8")


class _Breakable(TerminalEnv):
    """A terminal whose `break-sandbox` command fails as a dead sandbox would."""

    async def call_tool(self, name, arguments):
        if arguments.get("command") == "break-sandbox":
            raise InfraError("sandbox died during exec")
        return await super().call_tool(name, arguments)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_sample_that_breaks_its_own_branch_scores_zero(tmp_path, backend_name):
    """Count, not hide: the demonstration's branch ran and was measured, so a sample
    whose own branch failed scores 0 with its reason instead of being masked."""
    candidate = _candidate(tmp_path, "true", "echo 42 > answer")
    env = _Breakable(tasks=[], sandbox=backend_name, cache=SnapshotCache())

    async def go():
        state = await restore(env, candidate)
        return await Execution().verify_many(
            state, [bash("break-sandbox"), candidate.reference], candidate.reference
        )

    try:
        broken, expert = pivotgym.run_sync(go())
    finally:
        env.close()
    assert not broken.infra_error and broken.reward == 0.0
    assert "sandbox died" in broken.reason and broken.details["branch_failed"]
    assert expert.reward == 1.0


def test_the_security_document_names_every_test_of_this_suite():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    names = re.findall(r"^def (test_\w+)", Path(__file__).read_text(), re.M)
    this = "test_the_security_document_names_every_test_of_this_suite"
    missing = [name for name in names if name not in doc and name != this]
    assert missing == [], json.dumps(missing)
