"""Hostile commands and host-side probes shared by the sandbox backend suites."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import textwrap
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Forks until the process limit refuses, then prints how many children it made.
FORK_COUNTER = textwrap.dedent(
    """
    import os, time
    n = 0
    try:
        while n < 10000:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
    except OSError:
        pass
    print(n)
    """
)
FORK_BOMB = ":(){ :|:& };:; sleep 2"
MEMORY_HOG = "x = b'a' * (512 << 20); print('survived')"
# Ignores the polite signal, so only SIGKILL (or a dying namespace) stops it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)"
# Leaves children behind in every usual way: a background job, nohup, a new session.
LEAVE_CHILDREN = (
    "sleep 1000 & nohup sleep 1001 >/dev/null 2>&1 & "
    f"setsid python3 -c '{STUBBORN}' & sleep 0.3; echo started"
)
FLOOD = "yes pivot | head -c 5000000"
FLOOD_BYTES = 5_000_000


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextlib.contextmanager
def tcp_listener() -> Iterator[int]:
    """A TCP listener on the host's loopback; yields its port and checks, on the way out,
    that nobody connected."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    try:
        yield listener.getsockname()[1]
        try:
            conn, peer = listener.accept()
        except BlockingIOError:
            return
        conn.close()
        raise AssertionError(f"the sandbox reached the host listener from {peer}")
    finally:
        listener.close()


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state letter, command line) for every process on the host."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        args = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        table[int(entry)] = (int(fields[1]), fields[0].decode(), args)
    return table


def descendants(root: int) -> list[str]:
    """Every process below ``root`` (zombies included), as 'pid state args'."""
    table = _proc_table()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, args) in table.items():
            if ppid == parent:
                found.append(f"{pid} {state} {args}")
                frontier.append(pid)
    return found


def leftovers(*texts: str) -> list[str]:
    """Host processes (but this one) whose command line holds any of ``texts``."""
    return [f"{pid} {state} {args}" for pid, (_, state, args) in _proc_table().items()
            if pid != os.getpid() and any(t in args for t in texts)]  # fmt: skip


async def sandbox_processes(sb: Any) -> list[str]:
    """What still runs in sandbox ``sb`` between execs: bwrap's processes are this
    process's descendants (zombies do not run: a driver killed by another test leaves
    its namespace inits to this process, a subreaper, until its next reap); a
    container's are listed from inside (less PID 1 and the listing itself)."""
    if sb.backend.name == "bwrap":
        return [p for p in descendants(os.getpid()) if p.split()[1] != "Z"]
    res = await sb.exec(["ps", "-e", "-o", "pid=,args="])
    rows = [line.split(None, 1) for line in res.output.splitlines() if line.strip()]
    return [args for pid, args in rows if pid != "1" and "pid=,args=" not in args]
