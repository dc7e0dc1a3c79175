"""Permissions: make scripts executable, make a file read-only."""

from __future__ import annotations

import random

from ..content import SERVICES, WORDS
from ..plan import Family, TaskPlan, done, plan, py_check, script, verifier


def _chmod_scripts(rng: random.Random, index: int) -> TaskPlan:
    folder = rng.choice(["scripts", "bin", "tools", "ops"])
    names = rng.sample(["deploy", "backup", "rotate_logs", "migrate", "healthcheck", "cleanup"], 3)
    files: dict[str, str | bytes] = {
        f"{folder}/{n}.sh": f"#!/bin/bash\nset -e\necho 'running {n}'\n" for n in names
    }
    others = [f"{folder}/README.md", f"{folder}/{rng.choice(WORDS)}.conf"]
    files.update({p: "documentation\n" for p in others})
    sub = f"{folder}/lib/{rng.choice(['common', 'helpers'])}.sh"
    files[sub] = 'log() { echo "[$(basename "$0")] $*"; }\n'
    scripts = sorted(p for p in files if p.endswith(".sh"))
    instruction = rng.choice(
        [
            f"Make every .sh script under {folder}/ (including subfolders) executable. Other files "
            "must not become executable.",
            f"The shell scripts in {folder}/ can't be run: `permission denied`. Fix the "
            "permissions "
            "of all *.sh files there (recursively), and only those.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import os
for path in {scripts!r}:
    assert os.stat(path).st_mode & 0o100, path
for path in {others!r}:
    assert not os.stat(path).st_mode & 0o111, path
"""
        )
    )
    cmd = rng.choice(
        [
            f"find {folder} -name '*.sh' -exec chmod +x {{}} +",
            f"find {folder} -type f -name '*.sh' | xargs chmod u+x,g+x",
            f"chmod +x {folder}/*.sh {folder}/*/*.sh",
        ]
    )
    turns = [
        ("Let me list the scripts.", f"find {folder} -type f | sort"),
        ("Adding the executable bit to the .sh files only.", cmd),
        ("Checking which files are executable now.", f"find {folder} -type f -perm -u+x | sort"),
        done(rng, f"the {len(scripts)} scripts under {folder}/ are executable"),
    ]
    return plan(
        "chmod-scripts",
        index,
        instruction,
        files,
        test,
        script(f"find {folder} -name '*.sh' -exec chmod +x {{}} +"),
        turns,
    )


def _read_only(rng: random.Random, index: int) -> TaskPlan:
    svc = rng.choice(SERVICES)
    target = rng.choice([f"secrets/{svc}.env", f"config/{svc}-prod.key", f"{svc}.credentials"])
    files: dict[str, str | bytes] = {
        target: f"API_KEY={rng.getrandbits(64):016x}\nDB_PASSWORD={rng.getrandbits(40):010x}\n",
        f"{target.rsplit('/', 1)[0] + '/' if '/' in target else ''}notes.txt": "rotate yearly\n",
    }
    instruction = rng.choice(
        [
            f"Lock down {target}: nobody should be able to write to it, and only the owner may "
            "read it.",
            f"Make {target} read-only for its owner and inaccessible to group and others.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import os, stat
mode = stat.S_IMODE(os.stat({target!r}).st_mode)
assert mode == 0o400, oct(mode)
"""
        )
    )
    cmd = rng.choice([f"chmod 400 {target}", f"chmod u=r,go= {target}", f"chmod 0400 {target}"])
    turns = [
        ("Let me check the current permissions.", f"stat -c '%a %n' {target}"),
        ("Setting it to owner read-only.", cmd),
        ("Verifying.", f"stat -c '%a %n' {target}"),
        done(rng, f"{target} is now mode 400 (owner read-only)"),
    ]
    return plan("read-only", index, instruction, files, test, script(f"chmod 400 {target}"), turns)


FAMILIES = [
    Family("chmod-scripts", "make shell scripts executable recursively", _chmod_scripts),
    Family("read-only", "make a secrets file owner-read-only", _read_only),
]
