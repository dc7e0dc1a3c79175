"""The browser every browser world of an event loop shares: Chromium, caged, under Playwright.

One Chromium process per event loop (a worker), driven by Playwright's async API, and a
fresh browser context per episode and per branch (:mod:`pivotgym.envs.browser.world`).
Chromium is Debian's (``executable_path``: Playwright's own builds are never
downloaded), started through a launcher script that puts it in a bubblewrap cage. It
is Chromium's headless shell (Debian's ``chromium-headless-shell``), the build made for
automation: the full browser in headless mode kept two renderers for each context, took
3.5 times the memory a context and about 6 times the time to fork a context with its
page (``bench/bench_browser.py``; ``docs/browser.md``, "Costs"). The cage:

- **no network**: a private network namespace holds only its loopback; the sites a world
  serves reach the pages through Playwright's request interception, in this process, so
  nothing listens on any socket and a page can reach nothing else;
- **nothing of the host**: the host's ``/usr`` read-only, the few ``/etc`` entries fonts
  and the loader need, and private ``/tmp``, ``/dev/shm`` and home on tmpfs (the profile
  lives there); no host environment (``--clearenv``), and, when the driver is root, the
  unprivileged sandbox user (:func:`pivotgym.sandbox.bwrap.sandbox_uid`);
- **nothing outlives it**: a private pid namespace whose init dies with its parent
  (``--die-with-parent``). The parent is Playwright's driver, which exits when this
  process's pipes close, so a driver killed with ``SIGKILL`` takes its browser with it
  (``tests/test_browser_env.py`` kills one and counts what is left).

The runtime is counted: each world holds it, and the last one to let go stops the
browser, so no Chromium stays behind a closed env or a finished loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pivotgym.errors import InfraError
from pivotgym.sandbox.leases import owner_alive, owner_token


def _chromium() -> Path:
    """``$PIVOTGYM_CHROMIUM``, else Debian's headless shell, else its full browser (a
    machine set up before the shell was installed still runs, at the full browser's
    costs)."""
    if os.environ.get("PIVOTGYM_CHROMIUM"):
        return Path(os.environ["PIVOTGYM_CHROMIUM"])
    shell = Path("/usr/lib/chromium/chromium-headless-shell")
    full = Path("/usr/lib/chromium/chromium")
    return full if full.is_file() and not shell.is_file() else shell


CHROMIUM = _chromium()
# What fontconfig, the loader and the time zone need from the host's /etc.
_ETC = (
    "fonts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "passwd",
    "group",
    "nsswitch.conf",
    "alternatives",
    "mime.types",
)
# Rendering stays on the CPU, and nothing of the browser's own calls home (updates,
# metrics, safe browsing), which the namespace would refuse anyway.
ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--font-render-hinting=none",
]
# A label on the cage's command line, so that tests (and an operator) can find its
# processes among the host's.
LABEL = "--pivotgym-browser"
# Each browser's launch folder (its launcher script), with the driver that owns it.
FOLDER_PREFIX, OWNER_FILE = "pivotgym-browser-", "owner"
# The most a script of the harness may take in a page (reading it, marking it): a page
# that never yields (a loop in its own script) is the harness's failure to report, not
# an episode that hangs.
SCRIPT_TIMEOUT_S = 10.0


def unavailable() -> str | None:
    """Why no browser can start here, or ``None``."""
    if not CHROMIUM.is_file():
        if os.environ.get("PIVOTGYM_CHROMIUM"):
            return f"{CHROMIUM} not found (PIVOTGYM_CHROMIUM)"
        return f"{CHROMIUM} not found: apt-get install chromium-headless-shell"
    if shutil.which("bwrap") is None:
        return "bwrap not found: apt-get install bubblewrap"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install 'pivotgym[browser]'"
    return None


def launcher(folder: Path) -> Path:
    """Write the cage's launcher script into ``folder`` and return its path; Playwright
    runs it with Chromium's arguments."""
    bwrap = [
        "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "HOME",
        "/home",
        "--setenv",
        "TZ",
        "UTC",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            bwrap += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif os.path.isdir(f"/{link}"):
            bwrap += ["--ro-bind", f"/{link}", f"/{link}"]
    for name in _ETC:
        bwrap += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    bwrap += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/dev/shm",
        "--tmpfs",
        "/home",
        "--tmpfs",
        "/run",
        "--remount-ro",
        "/",
    ]
    prefix: list[str] = []
    if os.geteuid() == 0:
        from pivotgym.sandbox.bwrap import sandbox_uid

        uid = sandbox_uid()
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    command = [*prefix, *bwrap, str(CHROMIUM), LABEL]
    script = folder / "chromium"
    script.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@"\n')
    script.chmod(0o755)
    return script


class BrowserRuntime:
    """Playwright and one caged Chromium, shared by the worlds of one event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.users = 0
        self._playwright: Any = None
        self.browser: Any = None
        self._folder: Path | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> Any:
        """The browser, started if need be; pair each call with :meth:`release`."""
        async with self._lock:
            self.users += 1
            if self.browser is None or not self.browser.is_connected():
                try:
                    await self._start()
                except BaseException:
                    self.users -= 1
                    raise
            return self.browser

    async def release(self) -> None:
        async with self._lock:
            self.users -= 1
            if self.users == 0:
                await self._stop()

    async def _start(self) -> None:
        reason = unavailable()
        if reason is not None:
            raise InfraError(f"no browser: {reason}")
        from playwright.async_api import Error, async_playwright

        await self._stop()
        reap()
        self._folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        # Written whole, then renamed into place: another worker's reaper that read a
        # half-written owner file would take the folder for a dead driver's and remove it
        # under this one (seen with two report workers starting browsers at once).
        partial = self._folder / f"{OWNER_FILE}.partial"
        partial.write_text(owner_token())
        partial.replace(self._folder / OWNER_FILE)
        script = launcher(self._folder)
        self._folder.chmod(0o755)
        try:
            self._playwright = await async_playwright().start()
            self.browser = await self._playwright.chromium.launch(
                executable_path=str(script),
                headless=True,
                args=ARGS,
                env={},
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
            )
        except Error as exc:
            await self._stop()
            raise InfraError(f"Chromium did not start: {str(exc).splitlines()[0]}") from None

    async def _stop(self) -> None:
        browser, playwright, folder = self.browser, self._playwright, self._folder
        self.browser = self._playwright = self._folder = None
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.close()
        if playwright is not None:
            await playwright.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def reap() -> int:
    """Remove the launch folders of drivers that died without cleaning up (killed with
    SIGKILL: their browsers died with them, the folder stayed); how many."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            owner = (folder / OWNER_FILE).read_text()
        except OSError:  # being made, or not one of ours
            continue
        if not owner_alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


_runtimes: dict[asyncio.AbstractEventLoop, BrowserRuntime] = {}


def runtime() -> BrowserRuntime:
    """The runtime of the running event loop."""
    loop = asyncio.get_running_loop()
    for other in [other for other in _runtimes if other.is_closed()]:
        del _runtimes[other]
    if loop not in _runtimes:
        _runtimes[loop] = BrowserRuntime()
    return _runtimes[loop]


async def evaluate(page: Any, script: str, arg: Any = None) -> Any:
    """``page.evaluate`` within :data:`SCRIPT_TIMEOUT_S` (``InfraError`` past it)."""
    try:
        return await asyncio.wait_for(page.evaluate(script, arg), SCRIPT_TIMEOUT_S)
    except TimeoutError:
        raise InfraError(
            f"the page at {page.url} did not answer in {SCRIPT_TIMEOUT_S:g} s"
        ) from None
