"""diff and patch: apply a unified diff, produce one that reproduces a change."""

from __future__ import annotations

import difflib
import random

from ..content import WORDS
from ..plan import Family, TaskPlan, done, plan, py_check, script, text_is, verifier


def _module(rng: random.Random) -> tuple[str, str, str]:
    """A small Python module, a fixed version of it, and the function that changed."""
    funcs = rng.sample(WORDS, 4)
    bug = rng.choice(funcs)
    limit = rng.randint(3, 9)
    parts, fixed = [], []
    for f in funcs:
        body = f'def {f}(items):\n    """Process {f} items."""\n    result = []\n'
        body += "    for item in items:\n        result.append(item)\n"
        parts.append(body + f"    return result[:{limit}]\n")
        fixed.append(
            body
            + (
                f"    return result[:{limit + 1}]\n"
                if f == bug
                else f"    return result[:{limit}]\n"
            )
        )
    return "\n\n".join(parts), "\n\n".join(fixed), bug


def _unified(old: str, new: str, a: str, b: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), a, b))


def _apply_patch(rng: random.Random, index: int) -> TaskPlan:
    src = rng.choice(["lib/process.py", "src/handlers.py", "app/core.py"])
    old, new, bug = _module(rng)
    patch_name = rng.choice(["fix.patch", f"fix-{bug}.diff", "patches/0001-off-by-one.patch"])
    patch_text = _unified(old, new, f"a/{src}", f"b/{src}")
    files: dict[str, str | bytes] = {src: old, patch_name: patch_text}
    instruction = rng.choice(
        [
            f"Apply {patch_name} to the source tree (it's a git-style unified diff against {src}).",
            f"A colleague sent {patch_name} with a fix for {bug}(). Please apply it.",
        ]
    )
    test = verifier(text_is(src, new))
    apply = rng.choice(
        [f"patch -p1 < {patch_name}", f"patch -p1 -i {patch_name}", f"git apply {patch_name}"]
    )
    turns = [
        ("Let me read the patch first.", f"cat {patch_name}"),
        ("Checking it applies cleanly.", f"patch -p1 --dry-run < {patch_name}"),
        ("Applying it.", apply),
        ("Verifying the change landed.", f"grep -n -A5 'def {bug}' {src}"),
        done(rng, f"{patch_name} is applied to {src}"),
    ]
    if rng.random() < 0.5:
        del turns[1]
    return plan(
        "apply-patch", index, instruction, files, test, script(f"patch -p1 < {patch_name}"), turns
    )


def _make_diff(rng: random.Random, index: int) -> TaskPlan:
    name = rng.choice(["nginx.conf", "haproxy.cfg", "settings.conf"])
    lines = [f"{w} {rng.randint(1, 500)};" for w in rng.sample(WORDS, 10)]
    changed = list(lines)
    for i in rng.sample(range(10), 2):
        changed[i] = changed[i].split()[0] + f" {rng.randint(501, 999)};"
    changed.insert(rng.randint(0, 10), f"{rng.choice(WORDS)}_extra on;")
    old, new = "\n".join(lines) + "\n", "\n".join(changed) + "\n"
    out = rng.choice(["changes.diff", "config.patch", "update.diff"])
    files: dict[str, str | bytes] = {f"{name}.orig": old, name: new}
    instruction = rng.choice(
        [
            f"I edited {name} (the original is {name}.orig). Produce a unified diff in {out} that "
            f"turns {name}.orig into {name}, so I can send it upstream.",
            f"Write the changes between {name}.orig and {name} as a unified diff to {out}.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import subprocess, tempfile, shutil, os
d = tempfile.mkdtemp()
shutil.copy({name + ".orig"!r}, os.path.join(d, "target"))
diff = open({out!r}).read()
assert diff.strip(), "empty diff"
p = subprocess.run(["patch", os.path.join(d, "target")], input=diff, text=True, capture_output=True)
assert p.returncode == 0, p.stdout + p.stderr
assert open(os.path.join(d, "target")).read() == {new!r}
shutil.rmtree(d)
"""
        )
    )
    turns = [
        ("Let me look at the differences first.", f"diff {name}.orig {name} || true"),
        ("Writing a unified diff.", f"diff -u {name}.orig {name} > {out} || true"),
        (
            "Checking the diff applies to the original.",
            f"cp {name}.orig /tmp/check.conf && patch /tmp/check.conf < {out} && cmp "
            f"/tmp/check.conf {name} && echo identical",
        ),
        done(rng, f"{out} holds the unified diff from {name}.orig to {name}"),
    ]
    if rng.random() < 0.5:
        turns[2] = ("Let me view the result.", f"cat {out} | tail -n +3")
    return plan(
        "make-diff",
        index,
        instruction,
        files,
        test,
        script(f"diff -u {name}.orig {name} > {out} || true"),
        turns,
    )


FAMILIES = [
    Family("apply-patch", "apply a unified diff with patch or git apply", _apply_patch),
    Family("make-diff", "produce a unified diff that reproduces an edit", _make_diff),
]
