"""Hostile commands and host-side probes shared by the sandbox backend suites."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
from collections.abc import Coroutine, Iterator
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
