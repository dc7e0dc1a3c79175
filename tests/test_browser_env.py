"""The browser env: the caged Chromium, the page text and BrowserGym's actions, MiniWoB++
and the apps, checks that read the backend, and reset to any turn and fork of browser
plus backend."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import pivotgym
from pivotgym.envs.browser.expert import call, demonstrate
from pivotgym.envs.browser.families import get_family
from pivotgym.envs.browser.families.page_text import find, parse
from pivotgym.envs.browser.runtime import (
    FOLDER_PREFIX,
    LABEL,
    OWNER_FILE,
    reap,
    runtime,
    unavailable,
)
from pivotgym.envs.browser.tasks import load_task_file
from pivotgym.errors import DataError
from pivotgym.sandbox.leases import owner_token

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def task_of(family: str, seed: int = 0):
    return get_family(family).generate(seed, f"{family}-{seed}")


def act(name: str, **arguments) -> dict:
    return call(name, 0, arguments)


def page_of(env) -> str:
    return env.messages[-1]["content"]


def caged() -> list[int]:
    """The pids of caged browser processes on this host."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if LABEL.encode() in cmdline.split(b"\0"):
                found.append(int(entry))
    return found


@pytest.fixture
def host_server():
    """An HTTP server on the host's loopback that counts the requests it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host secret")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], hits
    server.shutdown()


def test_the_browser_reaches_nothing_but_the_worlds_sites(host_server) -> None:
    port, hits = host_server

    async def probe() -> tuple[str, str, int]:
        browser = await runtime().acquire()
        try:
            # Without the world's interception: the cage's own network namespace.
            context = await browser.new_context()
            page = await context.new_page()
            try:
                await page.goto(f"http://127.0.0.1:{port}/", timeout=5_000)
                direct = await page.content()
            except Exception as exc:
                direct = str(exc).splitlines()[0]
            await context.close()
        finally:
            await runtime().release()
        env = pivotgym.make("browser", tasks=[])
        await env.areset(options={"task": task_of("shop.cheapest")})
        fetched = await env.world.page.evaluate(
            f"fetch('http://127.0.0.1:{port}/').then(r => r.status, e => String(e))"
        )
        await env.aclose()
        return direct, str(fetched), len(caged())

    direct, fetched, _ = asyncio.run(probe())
    assert "host secret" not in direct and "ERR_" in direct
    assert fetched in ("403", "TypeError: Failed to fetch")
    assert hits == []


def test_chromium_runs_unprivileged_and_sees_no_host_environment() -> None:
    os.environ["PIVOTGYM_TEST_SECRET"] = "s3cret"
    env = pivotgym.make("browser", tasks=[])
    try:
        env.reset(options={"task": task_of("shop.cheapest")})
        pids = caged()
        assert pids
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            uid = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("Uid:"))
            if os.geteuid() == 0:
                assert uid != 0
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except PermissionError:
                continue
            assert b"PIVOTGYM_TEST_SECRET" not in environ
    finally:
        env.close()
        del os.environ["PIVOTGYM_TEST_SECRET"]


def test_no_browser_process_outlives_a_driver_killed_with_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(
        "import asyncio, sys\n"
        "import pivotgym\n"
        "from pivotgym.envs.browser.families import get_family\n"
        "async def main():\n"
        "    env = pivotgym.make('browser', tasks=[])\n"
        "    await env.areset(options={'task': get_family('shop.cheapest').generate(0, 't')})\n"
        "    forks = await env.afork(2)\n"
        "    print('ready', flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    before = set(caged())
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "ready"
        assert set(caged()) - before
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 20
        while set(caged()) - before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not set(caged()) - before
        # Its launch folder stayed, for the reaper that every browser start runs (here,
        # or in any other process that starts a browser meanwhile).
        reap()
        owners = Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*/{OWNER_FILE}")
        assert not [f for f in owners if f.read_text().split(":")[1] == str(driver.pid)]
    finally:
        if driver.poll() is None:
            driver.kill()


def test_the_reaper_removes_the_launch_folders_of_dead_drivers_only() -> None:
    gone = subprocess.Popen(["sleep", "60"])
    dead_token = owner_token(gone.pid)  # read while it runs: its start time is part of it
    gone.kill()
    gone.wait()
    folders = []
    for token in (dead_token, owner_token()):
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
        (folder / OWNER_FILE).write_text(token)
        folders.append(folder)
    # A folder being made: its owner file is still being written under another name.
    folders.append(Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX)))
    (folders[-1] / f"{OWNER_FILE}.partial").write_text("")
    try:
        assert reap() >= 1
        assert not folders[0].exists() and folders[1].exists() and folders[2].exists()
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def test_a_reaper_running_while_a_browser_starts_leaves_its_folder(monkeypatch) -> None:
    # Another worker's reaper may run between a file's creation and its content: let it
    # run there, on every file the start writes.
    write_text = Path.write_text

    def interrupted(path: Path, data: str, *args, **kwargs):
        path.touch()
        reap()
        return write_text(path, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", interrupted)

    async def start() -> None:
        from pivotgym.envs.browser.runtime import BrowserRuntime

        browser = BrowserRuntime()
        try:
            assert (await browser.acquire()).is_connected()
        finally:
            await browser.release()

    asyncio.run(start())


def test_actions_answer_with_the_page_and_bad_ones_with_an_error_not_an_exception() -> None:
    env = pivotgym.make("browser", tasks=[], max_turns=50)
    try:
        env.reset(options={"task": task_of("shop.cheapest")})
        first = env.messages[-1]["content"]
        assert "URL: http://shop.test/" in first and "[" in first
        kitchen = find(first, "link", "Kitchen")
        env.step(act("click", bid=kitchen.bid))
        assert "URL: http://shop.test/category/Kitchen" in page_of(env)
        for bad, error in (
            (act("click", bid="99999"), "no element with bid '99999'"),
            (act("click", bid="not a bid"), "is not a bid"),
            (act("goto", url="http://example.com/"), "outside this task's sites"),
            (act("goto", url="file:///etc/passwd"), "outside this task's sites"),
            (act("fill", bid=kitchen.bid), "needs the argument 'value'"),
            (act("tab_focus", index=5), "no tab 5"),
            (act("go_forward"), "no page to go forward to"),
        ):
            _, reward, terminated, truncated, info = env.step(bad)
            assert error in page_of(env), (bad, page_of(env)[:200])
            assert info["calls"][0]["error"] and not terminated and reward == 0.0
        env.step(act("go_back"))
        assert "URL: http://shop.test/\n" in page_of(env)
        env.step(act("new_tab"))
        assert "Tab 1 (current): about:blank" in page_of(env)
        env.step(act("tab_close"))
        assert "Tab 1" not in page_of(env)
    finally:
        env.close()


def test_miniwob_pages_score_themselves_and_leaving_the_page_scores_nothing() -> None:
    env = pivotgym.make("browser", tasks=[])
    try:
        task = task_of("miniwob.click-button", 3)
        env.reset(options={"task": task})
        goal = env.messages[1]["content"].split("\n")[0]
        wanted = goal.split('"')[1]
        right = find(page_of(env), "button", wanted)
        wrong = next(e for e in parse(page_of(env)) if e.role == "button" and e.name != wanted)
        _, reward, terminated, *_ = env.step(act("click", bid=right.bid))
        assert terminated and reward == 1.0
        env.reset(options={"task": task})
        _, reward, terminated, *_ = env.step(act("click", bid=wrong.bid))
        assert terminated and reward == 0.0
        # Another task's page is not served: no easier page to score on.
        env.reset(options={"task": task})
        env.step(act("goto", url="http://miniwob.test/miniwob/click-test.html"))
        assert "Not found" in page_of(env)
        reward, info = env.evaluate()
        assert reward == 0.0 and "left the task's page" in info["reason"]
    finally:
        env.close()
    with pytest.raises(DataError, match="nondeterministic"):
        get_family("miniwob.click-dialog")


@pytest.mark.slow
def test_every_deterministic_miniwob_page_loads_with_its_goal_and_an_unscored_start() -> None:
    from pivotgym.envs.browser.miniwob import registered, task_names

    pages = task_names()
    assert len(pages) + sum(registered().values()) == len(registered()) >= 125
    env = pivotgym.make("browser", tasks=[])
    failed = []
    try:
        for page in pages:
            env.reset(options={"task": task_of(f"miniwob.{page}", 11)})
            reward, info = env.evaluate()
            # Loaded, seeded, its episode running and unscored, with elements to act on.
            if env.world.load_errors or not parse(page_of(env)) or reward != 0.0:
                failed.append((page, env.world.load_errors, reward, info))
    finally:
        env.close()
    assert not failed, failed


def _demonstrations(episodes: list[tuple[str, int]]) -> dict[tuple[str, int], object]:
    """Each MiniWoB++ page and seed's expert trajectory, recorded as the splits are, or
    the ``ExpertError`` that says why there is none."""
    from pivotgym.envs.browser.build import make_task
    from pivotgym.envs.browser.expert import ExpertError

    async def run() -> dict[tuple[str, int], object]:
        out: dict[tuple[str, int], object] = {}
        env = pivotgym.make("browser", tasks=[])
        try:
            for page, seed in episodes:
                try:
                    out[page, seed] = await demonstrate(
                        env, make_task(f"miniwob.{page}", seed), seed
                    )
                except ExpertError as exc:
                    out[page, seed] = exc
        finally:
            await env.aclose()
        return out

    return asyncio.run(run())


def test_the_miniwob_experts_read_what_the_goal_asks_and_take_back_a_covered_click() -> None:
    episodes = [("enter-text-2", 3), ("enter-text-2", 4), ("click-checkboxes-soft", 1)]
    episodes += [("click-checkboxes-large", 3), ("click-test-2", 6)]
    made = _demonstrations(episodes)
    failed = {e: str(t) for e, t in made.items() if not hasattr(t, "messages")}
    assert failed == {}
    goal = {e: t.messages[1]["content"].split("\n")[0] for e, t in made.items()}
    # The case asked differs between the two seeds, and the words are asked by meaning.
    assert "upper case" in goal["enter-text-2", 3] and "lower case" in goal["enter-text-2", 4]
    assert "similar to" in goal["click-checkboxes-soft", 1]
    # More boxes to tick than the default 10 turns allow, with Submit.
    assert goal["click-checkboxes-large", 3].count(",") + 1 >= 10
    # Button TWO covers button ONE at this seed: the click failed and was taken back,
    # and the trajectory presses ONE instead, showing no error.
    covered = made["click-test-2", 6]
    calls = [m["tool_calls"][0]["function"] for m in covered.messages if m.get("tool_calls")]
    assert [c["name"] for c in calls] == ["press"]
    assert not any("Error:" in (m["content"] or "") for m in covered.messages[2:])


@pytest.mark.slow
def test_every_miniwob_expert_solves_its_page() -> None:
    from pivotgym.envs.browser.families.miniwob import SOLVERS

    # click-widget asks for a "text" or a "textarea" widget, which the page text (like
    # BrowserGym's accessibility tree) shows alike, as textboxes: not always solvable.
    episodes = [(page, seed) for page in SOLVERS if page != "click-widget" for seed in (5, 6, 7)]
    made = _demonstrations(episodes)
    assert {e: str(t) for e, t in made.items() if not hasattr(t, "messages")} == {}


def test_miniwob_splits_are_cached_apart_by_size_and_browser(monkeypatch) -> None:
    from pivotgym.envs.browser import build, runtime

    base = build.cache_dir()
    assert build.cache_dir(2) != base
    monkeypatch.setattr(runtime, "CHROMIUM", Path("/elsewhere/chromium"))
    assert build.cache_dir() != base


def test_an_app_task_is_checked_on_the_database_not_on_the_page() -> None:
    env = pivotgym.make("browser", tasks=[])
    try:
        task = task_of("shop.order-total", 1)
        env.reset(options={"task": task})
        # An answer the page shows is not what the check reads: only what is sent counts.
        _, reward, terminated, *_ = env.step(act("send_msg_to_user", text="I do not know."))
        assert terminated and reward == 0.0
        env.reset(options={"task": task})
        _, reward, *_ = env.step(act("send_msg_to_user", text=f"It was {task.params['total']}."))
        assert reward == 1.0
    finally:
        env.close()


@pytest.fixture(scope="module")
def bought():
    """An expert's trajectory of a shop order, recorded live."""

    async def record():
        env = pivotgym.make("browser", tasks=[])
        try:
            return await demonstrate(env, task_of("shop.buy", 2), seed=2)
        finally:
            await env.aclose()

    return asyncio.run(record())


def test_reset_to_any_turn_restores_the_page_the_agent_saw(bought) -> None:
    assert bought.num_turns >= 8
    turns = [m for m in bought.messages if m["role"] == "assistant"]
    env = pivotgym.make("browser", tasks=[])
    try:
        for turn in range(bought.num_turns):
            obs, info = env.reset(options={"trajectory": bought, "turn": turn})
            assert obs == bought.prefix(turn)
            # The live page is the recorded one: the next action gives the record's result.
            env.step(turns[turn])
            expected = bought.prefix(turn + 1)[-1] if turn + 1 < bought.num_turns else None
            if expected is not None:
                assert page_of(env) == expected["content"]
    finally:
        env.close()


def test_forks_have_their_own_backend_and_browser_state(bought) -> None:
    env = pivotgym.make("browser", tasks=[])
    try:
        # The turn before "Place order": the checkout page, logged in, cart full.
        turn = bought.num_turns - 2
        env.reset(options={"trajectory": bought, "turn": turn})
        assert "URL: http://shop.test/checkout" in page_of(env)
        branches = env.fork(3)
        place = [m for m in bought.messages if m["role"] == "assistant"][turn]
        branches[0].step(place)
        assert "Order #" in page_of(branches[0])
        count = "SELECT COUNT(*) FROM orders"
        orders = [b.world.databases["shop.test"].execute(count).fetchone()[0] for b in branches]
        assert orders[0] == orders[1] + 1 == orders[2] + 1
        for other in branches[1:]:
            other.step(act("goto", url="http://shop.test/orders"))
            assert f"#{orders[0]}" not in page_of(other)
            other.step(act("goto", url="http://shop.test/cart"))
            assert "Proceed to checkout" in page_of(other)  # its cart is still full
        branches[0].step(act("goto", url="http://shop.test/cart"))
        assert "Your cart is empty" in page_of(branches[0])
        for branch in branches:
            branch.close()
    finally:
        env.close()


def test_a_changed_page_diverges_on_replay(bought) -> None:
    from pivotgym.core.trajectory import Trajectory
    from pivotgym.errors import DivergenceError

    messages = [dict(m) for m in bought.messages]
    tool = next(i for i, m in enumerate(messages) if m["role"] == "tool")
    messages[tool]["content"] = messages[tool]["content"].replace("Shop", "Sh0p", 1)
    changed = Trajectory(id="changed", env="browser", task=bought.task, messages=messages)
    env = pivotgym.make("browser", tasks=[])
    try:
        with pytest.raises(DivergenceError):
            env.reset(options={"trajectory": changed, "turn": 2})
    finally:
        env.close()


def test_bad_task_files_and_databases_get_one_line_errors(tmp_path: Path) -> None:
    good = task_of("shop.buy").to_json()
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "seed": "x"}) + "\n")
    with pytest.raises(DataError, match=r"tasks.jsonl:2: seed: must be an integer"):
        load_task_file(path)
    path.write_text(json.dumps({**good, "family": "shop.nothing"}) + "\n")
    with pytest.raises(DataError, match=r"no browser task family 'shop\.nothing'"):
        load_task_file(path)
    path.write_text(json.dumps({**good, "params": {}}) + "\n")
    with pytest.raises(DataError, match=r"params\.user"):
        load_task_file(path)
    import sqlite3

    from pivotgym.envs.browser.apps.shop import Shop

    db = sqlite3.connect(":memory:")
    db.executescript(Shop.schema)
    db.executescript("DROP TABLE users; CREATE TABLE users (id INTEGER, username TEXT);")
    with pytest.raises(DataError, match=r"shop\.test's database lacks column 'password'"):
        Shop().check_schema(db, "shop.db")


def test_what_the_agent_types_into_a_page_is_shown_as_text_never_run() -> None:
    env = pivotgym.make("browser", tasks=[], max_turns=40)
    try:
        task = task_of("tracker.close-issue", 1)
        env.reset(options={"task": task})
        env.step(act("goto", url=f"http://tracker.test/issues/{task.params['issue']}"))
        env.step(act("click", bid=find(page_of(env), "link", "Log in to comment").bid))
        for label, value in (
            ("Username", task.params["user"]),
            ("Password", task.params["password"]),
        ):
            env.step(act("fill", bid=find(page_of(env), "textbox", label).bid, value=value))
        env.step(act("click", bid=find(page_of(env), "button", "Log in").bid))
        payload = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
        env.step(act("fill", bid=find(page_of(env), "textbox", "Comment").bid, value=payload))
        env.step(act("click", bid=find(page_of(env), "button", "Add comment").bid))
        assert "window.pwned = 1" in page_of(env)  # shown as the text it is
        pwned = asyncio.run_coroutine_threadsafe(
            env.world.page.evaluate("() => window.pwned === undefined"), _loop()
        ).result()
        assert pwned
    finally:
        env.close()


def _loop():
    from pivotgym.core import env as core_env

    return core_env._loop


def test_a_page_that_never_yields_is_an_infrastructure_failure_not_a_hang(monkeypatch) -> None:
    from pivotgym.envs.browser import runtime as browser_runtime
    from pivotgym.envs.browser.sites import Response, Site
    from pivotgym.envs.browser.world import BrowserSnapshot, BrowserWorld, TabState
    from pivotgym.errors import InfraError

    monkeypatch.setattr(browser_runtime, "SCRIPT_TIMEOUT_S", 2.0)

    class Busy(Site):
        host = "busy.test"

        def handle(self, request, db):
            return Response(200, '<button onclick="while (true) {}">Spin</button>')

    async def spin() -> float:
        site = Busy()
        world = await BrowserWorld.open(
            {site.host: site}, BrowserSnapshot({}, tabs=(TabState(history=("http://busy.test/",)),))
        )
        start = time.monotonic()
        try:
            text = (await world.mark(max_chars=1000))["text"]
            bid = find(text, "button", "Spin").bid
            with pytest.raises((InfraError, ValueError)):
                await world.act("click", {"bid": bid, "button": "left", "modifiers": []})
                await world.mark(max_chars=1000)
            return time.monotonic() - start
        finally:
            await world.close()

    assert asyncio.run(spin()) < 30


def test_local_storage_and_typed_drafts_travel_with_forks(bought) -> None:
    env = pivotgym.make("browser", tasks=[])
    try:
        # After the product page was seen, the home page lists it from local storage.
        env.reset(options={"trajectory": bought, "turn": bought.num_turns - 1})
        env.step(act("goto", url="http://shop.test/"))
        seen = [line for line in page_of(env).splitlines() if "Recently viewed" in line]
        assert seen and bought.task["params"]["product"] in seen[0]
        branch = env.fork(1)[0]
        assert [ln for ln in page_of(branch).splitlines() if "Recently viewed" in ln] == seen
        branch.step(act("goto", url="http://shop.test/"))  # a reload reads the storage again
        assert [ln for ln in page_of(branch).splitlines() if "Recently viewed" in ln] == seen
        branch.close()
    finally:
        env.close()


def test_the_verifier_accepts_equivalent_actions_and_refuses_others(bought) -> None:
    import re

    from pivotgym.core.candidates import candidates
    from pivotgym.envs.browser.verifier import BrowserVerifier
    from pivotgym.verifiers.base import restore

    verifier = BrowserVerifier()
    env = pivotgym.make("browser", tasks=[])
    by_turn = {c.turn: c for c in candidates([bought])}
    turns = [m for m in bought.messages if m["role"] == "assistant"]

    def name_of(turn: int) -> str:
        return turns[turn]["tool_calls"][0]["function"]["name"]

    async def judge(turn: int, sample: dict) -> float:
        state = await restore(env, by_turn[turn])
        return (await verifier.verify(state, sample, by_turn[turn].reference)).reward

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, _loop()).result()

    try:
        for turn in range(bought.num_turns):
            assert run(judge(turn, turns[turn])) == 1.0, turn

        # A link clicked, or its URL typed: the same page.
        def lands(t: int) -> str:
            return bought.prefix(t + 1)[-1]["content"]

        link = next(
            t
            for t in range(bought.num_turns)
            if name_of(t) == "click"
            and (
                "URL: http://shop.test/category/" in lands(t)
                or "URL: http://shop.test/product/" in lands(t)
            )
        )
        url = re.search(r"^URL: (\S+)", bought.prefix(link + 1)[-1]["content"], re.M)[1]
        assert run(judge(link, act("goto", url=url))) == 1.0
        assert run(judge(link, act("goto", url="http://shop.test/cart"))) == 0.0
        # The login form: the second field first is the expert's work in another order.
        first_fill = next(
            t
            for t in range(bought.num_turns)
            if name_of(t) == "fill"
            and "URL: http://shop.test/login" in bought.prefix(t)[-1]["content"]
        )
        second = turns[first_fill + 1]
        assert name_of(first_fill + 1) == "fill"
        assert run(judge(first_fill, second)) == 1.0
        wrong = json.loads(second["tool_calls"][0]["function"]["arguments"])
        wrong["value"] = "not-the-password"
        assert run(judge(first_fill, act("fill", **wrong))) == 0.0
        # Another turn's action, an action that fails, a wrong answer.
        assert run(judge(first_fill, turns[first_fill + 2])) == 0.0
        assert run(judge(0, act("click", bid="99999"))) == 0.0
    finally:
        env.close()


def test_the_verifier_judges_an_answer_by_the_tasks_check() -> None:
    from pivotgym.core.candidates import candidates
    from pivotgym.envs.browser.verifier import BrowserVerifier
    from pivotgym.verifiers.base import restore

    async def go() -> list[float]:
        env = pivotgym.make("browser", tasks=[])
        try:
            task = task_of("wiki.fact", 4)
            trajectory = await demonstrate(env, task, 4)
            answer = [c for c in candidates([trajectory])][-1]
            state = await restore(env, answer)
            verifier = BrowserVerifier()
            said = f"It is {task.params['answer']}, as the article says."
            return [
                (
                    await verifier.verify(
                        state, act("send_msg_to_user", text=text), answer.reference
                    )
                ).reward
                for text in (said, "I do not know.")
            ]
        finally:
            await env.aclose()

    assert asyncio.run(go()) == [1.0, 0.0]


def test_a_site_that_fails_or_a_page_that_does_not_load_is_told_not_raised() -> None:
    from pivotgym.envs.browser.sites import Site
    from pivotgym.envs.browser.world import BrowserSnapshot, BrowserWorld, TabState

    class Broken(Site):
        host = "broken.test"

        def handle(self, request, db):
            raise RuntimeError("a bug of the app")

    async def visit() -> tuple[str, list[str]]:
        site = Broken()
        world = await BrowserWorld.open(
            {site.host: site},
            BrowserSnapshot(
                {},
                tabs=(
                    TabState(history=("http://broken.test/",)),
                    TabState(history=("http://broken.test:notaport/",)),
                ),
            ),
        )
        try:
            return (await world.mark(world.pages[0], max_chars=500))["text"], world.load_errors
        finally:
            await world.close()

    text, errors = asyncio.run(visit())
    assert "Internal error of broken.test: RuntimeError" in text
    assert len(errors) == 1 and "did not load" in errors[0]


def test_a_database_that_is_not_the_apps_is_refused_in_one_line() -> None:
    from pivotgym.envs.browser.apps.shop import Shop
    from pivotgym.envs.browser.world import BrowserSnapshot, BrowserWorld, TabState

    async def open_with(image: bytes) -> None:
        site = Shop()
        world = await BrowserWorld.open(
            {site.host: site},
            BrowserSnapshot({site.host: image}, tabs=(TabState(history=("http://shop.test/",)),)),
        )
        await world.close()

    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(DataError, match=r"shop\.test database: no table 'sessions'"):
        asyncio.run(open_with(db.serialize()))
    with pytest.raises(DataError, match="not a SQLite database"):
        asyncio.run(open_with(b"garbage" * 100))
