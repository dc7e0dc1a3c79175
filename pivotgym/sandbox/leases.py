"""Ownership of sandboxes: who started them, and cleanup when that owner goes away.

Every sandbox and snapshot carries the owner token of the process that made it,
``host:pid:starttime``. The start time (from ``/proc/PID/stat``) guards against pid reuse:
a token is alive only if that pid is running *and* started at that moment. A backend's
``reap`` removes whatever belongs to a dead token, so leftovers of a driver killed with
SIGKILL disappear at the next start.

Within a live process, backends register themselves here; SIGINT, SIGTERM and normal
interpreter exit tear down everything they own before the process goes.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pivotgym.sandbox.base import Backend

LABEL = "pivotgym.owner"


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after the
    # last ')' are fixed. starttime is field 22, i.e. index 19 after the ')'.
    return stat[stat.rindex(b")") + 2 :].split()[19].decode()


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def owner_alive(token: str) -> bool:
    """Whether the process named by ``token`` still runs. Tokens of other hosts count as alive."""
    try:
        host, pid, start = token.rsplit(":", 2)
        pid_i = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True
    return process_running(pid_i, start)


def process_running(pid: int, start: str) -> bool:
    """Whether process ``pid`` of this host runs and started at ``start`` (no pid reuse)."""
    return _start_time(pid) == start


_backends: list[Backend] = []
_lock = threading.Lock()
_installed = False


def register_backend(backend: Backend) -> None:
    """Track ``backend`` so that its sandboxes are torn down on SIGINT, SIGTERM and exit.

    Signal handlers can only be installed from the main thread: backends register when
    constructed (normally there), and a registration from another thread leaves the
    installation to the next one made from the main thread.
    """
    global _installed
    with _lock:
        if backend not in _backends:
            _backends.append(backend)
        if _installed or threading.current_thread() is not threading.main_thread():
            return
        _installed = True
    atexit.register(close_all)
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        signal.signal(signum, _make_handler(signum, previous))


def close_all() -> None:
    with _lock:
        backends = list(_backends)
    for backend in backends:
        backend.close_all_sync()


def _make_handler(signum: int, previous: object):
    def handler(sig: int, frame: object) -> None:
        close_all()
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_IGN:
            return
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler
