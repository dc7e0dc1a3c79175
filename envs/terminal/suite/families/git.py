"""git: init and commit, commit on a branch, revert, find a commit, show an old revision."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..content import SERVICES, WORDS, paragraph
from ..gitrepo import Commit, repo_files
from ..plan import Family, TaskPlan, done, plan, py_check, script, text_is, verifier

_T0 = 1696150000  # 2023-10-01


@dataclass
class _History:
    commits: list[Commit]
    ids: list[str]
    files: dict[str, str | bytes]
    port_commit: int  # index of the commit that changed the port
    route_commit: int  # index of the commit that added the route
    route_line: str
    old_port: int
    new_port: int


def _config(port: int, workers: int, level: str) -> str:
    return (
        f"server:\n  port: {port}\n  host: 0.0.0.0\n  timeout: 30\n"
        f"logging:\n  level: {level}\n  format: json\nworkers: {workers}\n"
    )


def _history(rng: random.Random, root: str) -> _History:
    name = rng.choice(SERVICES)
    old_port, new_port = rng.sample([3000, 5000, 8000, 8080, 8443, 9000, 9090], 2)
    workers, level = rng.randint(2, 4), "info"
    routes = [f'app.add_route("/{w}", handle_{w})' for w in rng.sample(WORDS, 3)]
    route = rng.choice([w for w in WORDS if w not in " ".join(routes)])
    route_line = f'app.add_route("/{route}", handle_{route})'
    deps = ["flask==3.0.0", "gunicorn==21.2.0"]

    def server(rs: list[str]) -> str:
        return "from framework import App\n\napp = App()\n" + "\n".join(rs) + "\n"

    tree = {
        "README.md": f"# {name}\n\n{paragraph(rng, 8)}\n",
        "config.yml": _config(old_port, workers, level),
        "server.py": server(routes),
        "requirements.txt": "\n".join(deps) + "\n",
    }
    changes = ["port", "route", "workers", "deps", "level"]
    rng.shuffle(changes)
    commits = [Commit(dict(tree), "Initial commit", _T0)]
    port = old_port
    for i, change in enumerate(changes, start=1):
        if change == "port":
            port = new_port
            msg = f"Change default port to {new_port}"
        elif change == "route":
            routes = [*routes, route_line]
            tree["server.py"] = server(routes)
            msg = f"Add /{route} endpoint"
        elif change == "workers":
            workers *= 2
            msg = f"Increase workers to {workers}"
        elif change == "deps":
            deps.append("redis==5.0.1")
            tree["requirements.txt"] = "\n".join(deps) + "\n"
            msg = "Add redis dependency"
        else:
            level = "warning"
            msg = "Lower log verbosity"
        tree["config.yml"] = _config(port, workers, level)
        commits.append(Commit(dict(tree), msg, _T0 + i * 86400 + rng.randint(0, 3600)))
    files, ids = repo_files(commits, f"{root}/")
    return _History(
        commits,
        ids,
        files,
        1 + changes.index("port"),
        1 + changes.index("route"),
        route_line,
        old_port,
        new_port,
    )


def _repo_name(rng: random.Random) -> str:
    return rng.choice(["webapp", "service", "backend", "api-server"])


def _git_init(rng: random.Random, index: int) -> TaskPlan:
    root = rng.choice(["project", "my-tool", "scripts-repo", "homepage"])
    files: dict[str, str | bytes] = {
        f"{root}/README.md": f"# {root}\n\n{paragraph(rng, 6)}\n",
        f"{root}/main.py": "def main():\n    print('hello')\n\n\nif __name__ == '__main__':\n    "
        "main()\n",
        f"{root}/docs/usage.md": f"{paragraph(rng, 10)}\n",
    }
    ignore_logs = rng.random() < 0.5
    if ignore_logs:
        files[f"{root}/debug.log"] = "DEBUG starting\n"
        files[f"{root}/logs/run.log"] = "INFO ok\n"
    message = rng.choice(["Initial commit", "Import project", "First version"])
    tracked = sorted(p[len(root) + 1 :] for p in files if not p.endswith(".log"))
    extra = (
        " Don't commit the .log files; add a .gitignore so they stay out." if ignore_logs else ""
    )
    instruction = rng.choice(
        [
            f"Put {root}/ under version control: init a git repo there and commit everything "
            f'with the message "{message}".{extra}',
            f'Turn {root}/ into a git repository with one commit ("{message}") containing its '
            f"files.{extra}",
        ]
    )
    test = verifier(
        f'[ "$(git -C {root} log -1 --format=%s)" = "{message}" ]',
        f'[ -z "$(git -C {root} status --porcelain)" ]',
        py_check(
            f"""
import subprocess
out = subprocess.run(["git", "-C", {root!r}, "ls-files"], capture_output=True, text=True).stdout
got = sorted(set(out.split()) - {{".gitignore"}})
assert got == {tracked!r}, got
"""
        ),
    )
    turns = [
        ("Let me see what's in the folder.", f"find {root} -type f | sort"),
        ("Initialising the repository.", f"cd {root} && git init -q -b main && git status --short"),
    ]
    if ignore_logs:
        turns.append(
            (
                "Ignoring the log files before committing.",
                rng.choice(["printf '*.log\\n' > .gitignore", "echo '*.log' > .gitignore"]),
            )
        )
    add = rng.choice(["git add -A", "git add ."])
    turns += [
        ("Committing all files.", f'{add} && git commit -q -m "{message}"'),
        (
            "Checking the history and the working tree.",
            "git log --oneline && git status --short && git ls-files",
        ),
        done(rng, f'{root}/ is a git repository with the commit "{message}"'),
    ]
    steps = [f"cd {root}", "git init -q -b main"]
    if ignore_logs:
        steps.append("echo '*.log' > .gitignore")
    steps += ["git add -A", f'git commit -q -m "{message}"']
    return plan("git-init-commit", index, instruction, files, test, script(*steps), turns)


def _git_branch(rng: random.Random, index: int) -> TaskPlan:
    root = _repo_name(rng)
    hist = _history(rng, root)
    pkg = rng.choice(["requests==2.31.0", "pydantic==2.5.0", "sqlalchemy==2.0.23", "celery==5.3.5"])
    branch = rng.choice(["feature/" + pkg.split("=")[0], "add-" + pkg.split("=")[0], "deps-update"])
    message = f"Add {pkg.split('=')[0]}"
    head = hist.ids[-1]
    reqs = hist.commits[-1].tree["requirements.txt"]
    want = [*reqs.splitlines(), pkg]
    instruction = rng.choice(
        [
            f"In the {root} repo, create a branch {branch} off main, add `{pkg}` to "
            f'requirements.txt there and commit it with the message "{message}". Main must not '
            "change.",
            f"Start a new branch `{branch}` in {root}/ and commit a change that appends {pkg} to "
            f'requirements.txt (message: "{message}"). Don\'t touch main.',
        ]
    )
    test = verifier(
        f'[ "$(git -C {root} rev-parse main)" = "{head}" ]',
        f'[ "$(git -C {root} rev-parse {branch}~1)" = "{head}" ]',
        f'[ "$(git -C {root} log -1 --format=%s {branch})" = "{message}" ]',
        py_check(
            f"""
import subprocess
out = subprocess.run(["git", "-C", {root!r}, "show", "{branch}:requirements.txt"],
                     capture_output=True, text=True, check=True).stdout
assert sorted(l.strip() for l in out.splitlines() if l.strip()) == sorted({want!r}), out
"""
        ),
    )
    switch = rng.choice([f"git checkout -q -b {branch}", f"git switch -q -c {branch}"])
    turns = [
        (
            "Let me look at the repository state.",
            f"cd {root} && git status --short && git log --oneline -3",
        ),
        (
            f"Creating {branch} and adding the dependency.",
            f"{switch} && echo '{pkg}' >> requirements.txt && cat requirements.txt",
        ),
        ("Committing on the branch.", f'git commit -q -am "{message}" && git log --oneline -2'),
        (
            "Checking main is untouched.",
            rng.choice(["git diff --stat main " + branch, "git branch && git show --stat HEAD"]),
        ),
        done(rng, f'{branch} has the commit "{message}" on top of main'),
    ]
    solution = script(
        f"cd {root}",
        f"git checkout -q -b {branch}",
        f"echo '{pkg}' >> requirements.txt",
        f'git commit -q -am "{message}"',
    )
    return plan("git-branch-commit", index, instruction, hist.files, test, solution, turns)


def _git_revert(rng: random.Random, index: int) -> TaskPlan:
    root = _repo_name(rng)
    hist = _history(rng, root)
    target = hist.ids[hist.port_commit]
    msg = hist.commits[hist.port_commit].message
    head = hist.ids[-1]
    instruction = rng.choice(
        [
            f'The commit "{msg}" in {root}/ broke our deployment. Revert it without rewriting '
            "history (a new commit that undoes it).",
            f"Please undo the port change in the {root} repository with a revert commit; keep the "
            "later commits.",
        ]
    )
    test = verifier(
        f"git -C {root} merge-base --is-ancestor {head} HEAD",
        f'[ "$(git -C {root} rev-list --count HEAD)" -gt {len(hist.ids)} ]',
        f'[ -z "$(git -C {root} status --porcelain)" ]',
        f"git -C {root} show HEAD:config.yml | grep -q '^  port: {hist.old_port}$'",
        f"git -C {root} show HEAD:server.py | grep -qF '{hist.route_line}'",
    )
    turns = [
        ("Let me look at the history.", f"cd {root} && git log --oneline"),
        (
            "Finding the commit that changed the port.",
            rng.choice(
                [
                    "git log --oneline -- config.yml | grep -i port",
                    f"git log --format='%h %s' | grep 'port to {hist.new_port}'",
                ]
            ),
        ),
        ("Let me check what it changed.", f"git show --format='%h %s' {target[:7]}"),
        ("Reverting it with a new commit.", f"git revert --no-edit {target[:7]}"),
        (
            "Verifying the port is back and history is intact.",
            "grep port config.yml && git log --oneline -3",
        ),
        done(rng, f"the port change is reverted (port {hist.old_port} again) with a new commit"),
    ]
    if rng.random() < 0.5:
        del turns[2]
    return plan(
        "git-revert",
        index,
        instruction,
        hist.files,
        test,
        script(f"cd {root}", f"git revert --no-edit {target}"),
        turns,
    )


def _git_find(rng: random.Random, index: int) -> TaskPlan:
    root = _repo_name(rng)
    hist = _history(rng, root)
    commit = hist.ids[hist.route_commit]
    out = rng.choice(["commit.txt", "culprit.txt", "answer.txt"])
    instruction = rng.choice(
        [
            f"In {root}/, which commit added the line `{hist.route_line}` to server.py? Write its "
            f"full hash to {out}.",
            f"Find the commit in the {root} repo that introduced `{hist.route_line}` and put the "
            f"commit id (full SHA) in {out}.",
        ]
    )
    test = verifier(
        py_check(
            f"""
got = open({out!r}).read().split()
assert got and len(got[0]) >= 7 and {commit!r}.startswith(got[0]), got
"""
        )
    )
    needle = hist.route_line.split('"')[1]
    search = rng.choice(
        [
            f"git log -S '{needle}' --format='%H %s' -- server.py",
            f"git log -p --format='commit %H' -- server.py | grep -e '^commit' -e '^+.*{needle}'",
        ]
    )
    turns = [
        ("Let me confirm the line is there.", f"grep -n '{needle}' {root}/server.py"),
        ("Searching the history for when it appeared.", f"cd {root} && {search}"),
        (
            f"Writing the hash to {out}.",
            f"git log -S '{needle}' --format=%H -- server.py > ../{out} && cat ../{out}",
        ),
        done(rng, f"the line was added in {commit[:7]}; its full hash is in {out}"),
    ]
    return plan(
        "git-find-commit",
        index,
        instruction,
        hist.files,
        test,
        script(f"git -C {root} log -S '{needle}' --format=%H -- server.py > {out}"),
        turns,
    )


def _git_show(rng: random.Random, index: int) -> TaskPlan:
    root = _repo_name(rng)
    hist = _history(rng, root)
    which = rng.choice(["first", "port"])
    if which == "first":
        ref_text, idx = "the initial commit", 0
    else:
        idx = hist.port_commit - 1
        ref_text = f'just before the commit "{hist.commits[hist.port_commit].message}"'
    want = hist.commits[idx].tree["config.yml"]
    out = rng.choice(["config.old.yml", "previous_config.yml"])
    instruction = rng.choice(
        [
            f"I need config.yml from the {root} repo as it was in {ref_text}. Save that version "
            f"to {out} (here, next to {root}/). Don't change the repository.",
            f"Recover the version of {root}/config.yml from {ref_text} into a file {out} in the "
            "current folder; the repo's checkout should stay as is.",
        ]
    )
    test = verifier(
        text_is(out, want),
        f'[ "$(git -C {root} rev-parse HEAD)" = "{hist.ids[-1]}" ]',
        f'[ -z "$(git -C {root} status --porcelain)" ]',
    )
    rev = hist.ids[idx][:7]
    if which == "first":
        find = f"git -C {root} log --format='%h %s' --reverse | head -1"
        show = rng.choice(
            [
                f"git -C {root} show {rev}:config.yml > {out}",
                f"git -C {root} show $(git -C {root} rev-list --max-parents=0 HEAD):config.yml > "
                f"{out}",
            ]
        )
    else:
        port_rev = hist.ids[hist.port_commit][:7]
        find = f"git -C {root} log --oneline -- config.yml"
        show = f"git -C {root} show {port_rev}~1:config.yml > {out}"
    turns = [
        ("Let me look at the history.", find),
        ("Extracting the old version of the file.", show),
        ("Comparing it with the current one.", f"diff {out} {root}/config.yml || true"),
        done(rng, f"{out} has config.yml as of {ref_text}"),
    ]
    return plan(
        "git-show-revision",
        index,
        instruction,
        hist.files,
        test,
        script(f"git -C {root} show {hist.ids[idx]}:config.yml > {out}"),
        turns,
    )


FAMILIES = [
    Family(
        "git-init-commit", "init a repository and commit, optionally with a .gitignore", _git_init
    ),
    Family("git-branch-commit", "commit a change on a new branch, leaving main alone", _git_branch),
    Family("git-revert", "revert an earlier commit with a new commit", _git_revert),
    Family("git-find-commit", "find the commit that added a line", _git_find),
    Family("git-show-revision", "save a file as of an older revision", _git_show),
]
