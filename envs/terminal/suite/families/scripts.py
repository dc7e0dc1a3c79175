"""Write a small executable script; the verifier runs it on fresh input."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..content import WORDS, paragraph
from ..plan import Family, TaskPlan, done, plan, py_check, script, verifier


@dataclass(frozen=True)
class _Spec:
    ask: str  # what the script does, for the instruction
    bodies: tuple[str, ...]  # equivalent implementations
    sample: str  # content of the sample input file
    expected: Callable[[str], str]  # the output for an input text


def _specs(rng: random.Random) -> list[_Spec]:
    words = " ".join(rng.sample(WORDS, 6))
    return [
        _Spec(
            "prints the number of non-empty lines in the file given as its first argument",
            ('grep -c . "$1"', "awk 'NF' \"$1\" | wc -l", "grep -v '^$' \"$1\" | wc -l"),
            f"{words}\n\n{paragraph(rng, 4)}\n\n\nend\n",
            lambda t: str(sum(1 for line in t.splitlines() if line)),
        ),
        _Spec(
            "prints the lines of the file given as its first argument in reverse order",
            ('tac "$1"', "awk '{a[NR]=$0} END {for (i=NR; i>0; i--) print a[i]}' \"$1\""),
            "\n".join(rng.sample(WORDS, 5)) + "\n",
            lambda t: "\n".join(reversed(t.splitlines())),
        ),
        _Spec(
            "prints the longest line of the file given as its first argument (the first one on "
            "ties)",
            ("awk 'length($0) > max {max = length($0); line = $0} END {print line}' \"$1\"",),
            "\n".join(paragraph(rng, rng.randint(1, 5)) for _ in range(5)) + "\n",
            lambda t: max(t.splitlines(), key=len),
        ),
        _Spec(
            "prints each distinct word of the file given as its first argument with its count, "
            "as `<word> <count>` lines sorted by word",
            (
                "tr -s ' ' '\\n' < \"$1\" | grep -v '^$' | sort | uniq -c | awk '{print $2, $1}'",
                "awk '{for (i=1; i<=NF; i++) n[$i]++} END {for (w in n) print w, n[w]}' \"$1\" | "
                "sort",
            ),
            paragraph(rng, 12) + "\n" + paragraph(rng, 8) + "\n",
            lambda t: "\n".join(f"{w} {t.split().count(w)}" for w in sorted(set(t.split()))),
        ),
    ]


def _write_script(rng: random.Random, index: int) -> TaskPlan:
    spec = rng.choice(_specs(rng))
    name = rng.choice(["tool.sh", "run.sh", "process.sh"])
    folder = rng.choice(["bin", "scripts", "."])
    path = name if folder == "." else f"{folder}/{name}"
    sample = rng.choice(["sample.txt", "input.txt", "data/example.txt"])
    files: dict[str, str | bytes] = {sample: spec.sample}
    if folder != ".":
        files[f"{folder}/.keep"] = ""
    instruction = rng.choice(
        [
            f"Write an executable bash script {path} that {spec.ask}. You can try it on {sample}.",
            f"I need a script at {path} (bash, executable) which {spec.ask}. There's a sample "
            "input "
            f"in {sample}.",
        ]
    )
    fresh = [paragraph(rng, rng.randint(2, 6)) for _ in range(rng.randint(3, 6))]
    fresh.insert(rng.randint(1, len(fresh)), "")
    fresh_text = "\n".join(fresh) + "\n"
    test = verifier(
        f"[ -x {path} ]",
        py_check(
            f"""
import subprocess, tempfile, os
cases = {[(spec.sample, spec.expected(spec.sample)), (fresh_text, spec.expected(fresh_text))]!r}
norm = lambda s: [" ".join(line.split()) for line in s.strip().splitlines()]
for text, want in cases:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
    out = subprocess.run(["./{path}", f.name], capture_output=True, text=True, timeout=10).stdout
    os.unlink(f.name)
    assert norm(out) == norm(want), out
"""
        ),
    )
    body = rng.choice(spec.bodies)
    write = f"cat > {path} <<'EOF'\n#!/bin/bash\n{body}\nEOF"
    turns = [
        ("Let me look at the sample input.", f"cat {sample}"),
        (f"Writing {path}.", write),
        (
            "Making it executable and trying it on the sample.",
            f"chmod +x {path} && ./{path} {sample}",
        ),
        done(rng, f"{path} {spec.ask.split(' the file')[0]}; it's executable and tested"),
    ]
    if rng.random() < 0.5:
        turns.insert(
            3,
            (
                "Let me also try it on an ad-hoc input.",
                f"printf 'one two\\n\\nthree two one\\n' > /tmp/check.txt && ./{path} "
                "/tmp/check.txt",
            ),
        )
    solution = script(
        f"cat > {path} <<'EOF'\n#!/bin/bash\n{spec.bodies[0]}\nEOF", f"chmod +x {path}"
    )
    return plan("write-script", index, instruction, files, test, solution, turns)


FAMILIES = [Family("write-script", "write an executable text-processing script", _write_script)]
