"""Files and folders: organise, rename, find and delete, list, report sizes, link, cd."""

from __future__ import annotations

import random

from ..content import EXTENSIONS, SERVICES, WORDS, paragraph
from ..plan import Family, TaskPlan, done, plan, py_check, script, text_is, verifier


def _organize(rng: random.Random, index: int) -> TaskPlan:
    folder = rng.choice(["inbox", "downloads", "incoming", "desktop_dump"])
    exts = rng.sample(sorted(EXTENSIONS), rng.randint(3, 4))
    names: list[str] = []
    for ext in exts:
        stems = rng.sample(EXTENSIONS[ext], rng.randint(2, 3))
        names += [f"{s}_{rng.randint(1, 99):02d}.{ext}" for s in stems]
    rng.shuffle(names)
    files: dict[str, str | bytes] = {f"{folder}/{n}": f"{n} {paragraph(rng, 4)}\n" for n in names}
    instruction = rng.choice(
        [
            f"My {folder}/ folder is a mess. Move every file into a subfolder named after its "
            f"extension, e.g. {folder}/pdf/ for PDFs.",
            f"Please organise {folder}/ by file type: each file should end up in "
            f"{folder}/<extension>/ (like {folder}/{exts[0]}/{names[0]}).",
            f"Sort the files in {folder}/ into per-extension subdirectories ({folder}/txt/, "
            f"{folder}/jpg/ and so on). Keep the file names.",
        ]
    )
    moved = {f"{folder}/{n.rsplit('.', 1)[1]}/{n}": files[f"{folder}/{n}"] for n in names}
    test = verifier(
        py_check(
            f"""
import os
for path, text in {moved!r}.items():
    assert open(path).read() == text, path
loose = [n for n in os.listdir({folder!r}) if os.path.isfile(os.path.join({folder!r}, n))]
assert not loose, loose
"""
        )
    )
    loop = (
        f'for f in {folder}/*.*; do ext="${{f##*.}}"; mkdir -p "{folder}/$ext"; '
        f'mv "$f" "{folder}/$ext/"; done'
    )
    act = rng.choice(
        [
            loop,
            f"for ext in {' '.join(sorted(exts))}; do mkdir -p {folder}/$ext && "
            f"mv {folder}/*.$ext {folder}/$ext/; done",
            f'cd {folder} && for f in *.*; do mkdir -p "${{f##*.}}" && mv "$f" "${{f##*.}}/"; '
            "done; cd ..",
        ]
    )
    turns = [
        (
            rng.choice(["Let me see what's in the folder.", "First, a look at the files."]),
            f"ls {folder}",
        ),
        ("I'll create one folder per extension and move each file into it.", act),
        (
            rng.choice(["Let me check the result.", "Checking the new layout."]),
            f"find {folder} | sort",
        ),
        done(rng, f"every file in {folder}/ now sits in a subfolder named after its extension"),
    ]
    return plan("organize-by-extension", index, instruction, files, test, script(loop), turns)


_RENAMES = [("jpeg", "jpg"), ("markdown", "md"), ("htm", "html"), ("yml", "yaml"), ("text", "txt")]


def _rename(rng: random.Random, index: int) -> TaskPlan:
    old, new = rng.choice(_RENAMES)
    folder = rng.choice(["assets", "docs", "site", "export", "media"])
    stems = rng.sample(WORDS, rng.randint(3, 5))
    others = rng.sample([w for w in WORDS if w not in stems], 2)
    files: dict[str, str | bytes] = {
        f"{folder}/{s}.{old}": f"{s}: {paragraph(rng, 5)}\n" for s in stems
    }
    keep_ext = rng.choice(["css", "json", "txt" if old != "text" else "log"])
    files.update({f"{folder}/{s}.{keep_ext}": f"{paragraph(rng, 3)}\n" for s in others})
    instruction = rng.choice(
        [
            f"Rename all the .{old} files in {folder}/ to use the .{new} extension instead.",
            f"We're standardising on .{new}. Change every *.{old} file in {folder}/ to *.{new} "
            "(same base name).",
            f"In {folder}/, could you switch the extension of the .{old} files to .{new}? "
            "Leave other files alone.",
        ]
    )
    expected = {f"{folder}/{s}.{new}": files[f"{folder}/{s}.{old}"] for s in stems}
    expected.update({p: t for p, t in files.items() if not p.endswith(f".{old}")})
    test = verifier(
        py_check(
            f"""
import os
want = {expected!r}
for path, text in want.items():
    assert open(path).read() == text, path
have = sorted(os.path.join({folder!r}, n) for n in os.listdir({folder!r}))
assert have == sorted(want), have
"""
        )
    )
    loop = f'for f in {folder}/*.{old}; do mv "$f" "${{f%.{old}}}.{new}"; done'
    act = rng.choice(
        [
            loop,
            f"find {folder} -name '*.{old}' -exec sh -c 'mv \"$1\" \"${{1%.{old}}}.{new}\"' _ "
            f"{{}} \\;",
            f"python3 -c \"import pathlib; [p.rename(p.with_suffix('.{new}')) for p in "
            f"pathlib.Path('{folder}').glob('*.{old}')]\"",
        ]
    )
    turns = [
        ("Let me list the folder first.", f"ls {folder}"),
        (f"I'll rename each .{old} file to .{new}, keeping the base name.", act),
        ("Verifying the rename.", f"ls {folder}"),
        done(rng, f"the .{old} files in {folder}/ are now .{new}"),
    ]
    return plan("rename-by-pattern", index, instruction, files, test, script(loop), turns)


_JUNK = [("*.tmp", ".tmp"), ("*.bak", ".bak"), ("*.pyc", ".pyc"), ("*.orig", ".orig")]


def _tree(rng: random.Random, root: str, n: int, exts: list[str]) -> list[str]:
    dirs = [root] + [f"{root}/{d}" for d in rng.sample(["src", "lib", "tests", "docs"], 3)]
    dirs += [f"{rng.choice(dirs[1:])}/{rng.choice(['core', 'utils', 'io', 'net'])}"]
    paths: set[str] = set()
    while len(paths) < n:
        paths.add(f"{rng.choice(dirs)}/{rng.choice(WORDS)}{rng.choice(exts)}")
    return sorted(paths)


def _find_delete(rng: random.Random, index: int) -> TaskPlan:
    pattern, ext = rng.choice(_JUNK)
    root = rng.choice(["project", "repo", "workspace", "service"])
    keep = _tree(rng, root, rng.randint(6, 9), [".py", ".md", ".json", ".cfg"])
    junk = sorted({p.rsplit(".", 1)[0] + ext for p in rng.sample(keep, rng.randint(3, 5))})
    files: dict[str, str | bytes] = {p: f"# {p}\n{paragraph(rng, 4)}\n" for p in keep + junk}
    instruction = rng.choice(
        [
            f"Clean up {root}/: delete every {pattern} file anywhere in the tree.",
            f"There are leftover {ext} files all over {root}/. Remove them (recursively), "
            "but don't touch anything else.",
            f"Please get rid of all files matching {pattern} under {root}/, including subfolders.",
        ]
    )
    test = verifier(
        py_check(
            f"""
import os
found = sorted(os.path.join(d, f) for d, _, fs in os.walk({root!r}) for f in fs)
assert found == sorted({keep!r}), found
"""
        )
    )
    act = rng.choice(
        [
            f"find {root} -name '{pattern}' -delete",
            f"find {root} -type f -name '{pattern}' -exec rm {{}} +",
        ]
    )
    count = rng.choice(
        [f"find {root} -name '{pattern}' | wc -l", f"find {root} -name '{pattern}' -print | sort"]
    )
    turns = [
        (f"Let me find the {ext} files first.", f"find {root} -name '{pattern}' | sort"),
        ("Now I'll delete them.", act),
        ("Checking nothing matching is left.", count),
        done(rng, f"all {pattern} files under {root}/ are deleted"),
    ]
    if rng.random() < 0.5:
        turns.insert(0, ("Let me get an overview of the tree.", f"find {root} -type f | sort"))
    return plan(
        "find-delete",
        index,
        instruction,
        files,
        test,
        script(f"find {root} -name '{pattern}' -delete"),
        turns,
    )


def _find_list(rng: random.Random, index: int) -> TaskPlan:
    root = rng.choice(["project", "backend", "toolkit", "app_src"])
    ext = rng.choice([".py", ".sh", ".json", ".md"])
    paths = _tree(rng, root, rng.randint(9, 13), [".py", ".sh", ".json", ".md", ".txt"])
    if not any(p.endswith(ext) for p in paths):
        paths.append(f"{root}/main{ext}")
    files: dict[str, str | bytes] = {p: f"{paragraph(rng, 3)}\n" for p in paths}
    shallow = rng.random() < 0.4
    wanted = sorted(p for p in paths if p.endswith(ext) and (not shallow or p.count("/") <= 2))
    out = rng.choice([f"{ext[1:]}_files.txt", "filelist.txt", "found.txt"])
    scope = (
        f"directly in {root}/ or in its immediate subfolders (not deeper)"
        if shallow
        else f"anywhere under {root}/"
    )
    instruction = rng.choice(
        [
            f"Write the paths of all {ext} files {scope} into {out}, one per line, sorted, "
            f"like {root}/x{ext}.",
            f"I need an inventory: list every {ext} file {scope} in {out} (one path per line, "
            "sorted alphabetically).",
        ]
    )
    test = verifier(
        py_check(
            f"""
got = [l.strip() for l in open({out!r}) if l.strip()]
got = [l[2:] if l.startswith("./") else l for l in got]
assert got == {wanted!r}, got
"""
        )
    )
    depth = " -maxdepth 2" if shallow else ""
    cmd = f"find {root}{depth} -type f -name '*{ext}' | sort > {out}"
    turns = [
        ("Let me look at the whole tree first.", f"find {root} -type f | sort"),
        (
            f"Collecting the {ext} files{' down to the first subfolder level' if shallow else ''}.",
            cmd,
        ),
        (rng.choice(["Let me check the list.", "Checking the output."]), f"cat {out}"),
        done(rng, f"{out} lists the {len(wanted)} {ext} files"),
    ]
    return plan("find-list", index, instruction, files, test, script(cmd), turns)


def _largest(rng: random.Random, index: int) -> TaskPlan:
    root = rng.choice(["data", "storage", "uploads", "var_cache"])
    n = rng.randint(7, 10)
    sizes = rng.sample(range(200, 6000), n)
    names = sorted(
        {
            f"{root}/{rng.choice(['', 'raw/', 'tmp/', 'old/'])}{w}_{i}.bin"
            for i, w in enumerate(rng.sample(WORDS, n))
        }
    )
    files: dict[str, str | bytes] = {
        p: ("x" * (s - 1)) + "\n" for p, s in zip(names, sizes, strict=False)
    }
    k = rng.choice([3, 4, 5])
    top = sorted(files, key=lambda p: -len(files[p]))[:k]
    want = [(len(files[p]), p) for p in top]
    out = rng.choice(["largest.txt", "report.txt", "big_files.txt"])
    instruction = rng.choice(
        [
            f"Disk is filling up. Write the {k} largest files under {root}/ into {out}, "
            "biggest first, each line as `<size in bytes> <path>`.",
            f"Make a report {out} of the top {k} files by size in {root}/ (recursively): "
            "one line per file, `<bytes> <path>`, largest first.",
        ]
    )
    test = verifier(
        py_check(
            f"""
rows = [l.split() for l in open({out!r}) if l.strip()]
got = [(int(r[0]), r[1][2:] if r[1].startswith("./") else r[1]) for r in rows]
assert got == {want!r}, got
"""
        )
    )
    cmd = rng.choice(
        [
            f"find {root} -type f -exec stat -c '%s %n' {{}} + | sort -rn | head -{k} > {out}",
            f"find {root} -type f -exec wc -c {{}} + | grep -v ' total$' | sort -rn | "
            f"head -{k} | awk '{{print $1, $2}}' > {out}",
        ]
    )
    turns = [
        (
            "Let me see the files and their sizes.",
            f"find {root} -type f -exec stat -c '%s %n' {{}} + | sort -rn",
        ),
        (f"Writing the top {k} into {out}.", cmd),
        ("Verifying the report.", f"cat {out}"),
        done(rng, f"{out} lists the {k} largest files under {root}/"),
    ]
    solution = script(
        f"find {root} -type f -exec stat -c '%s %n' {{}} + | sort -rn | head -{k} > {out}"
    )
    return plan("largest-files", index, instruction, files, test, solution, turns)


def _symlink(rng: random.Random, index: int) -> TaskPlan:
    majors = rng.randint(1, 3)
    versions = sorted({(majors, rng.randint(0, 12), rng.randint(0, 9)) for _ in range(5)})
    newest = "v{}.{}.{}".format(*versions[-1])
    tags = ["v{}.{}.{}".format(*v) for v in versions]
    link = rng.choice(["current", "live", "active"])
    files: dict[str, str | bytes] = {}
    for t in tags:
        files[f"releases/{t}/VERSION"] = t[1:] + "\n"
        files[f"releases/{t}/app.py"] = f"print('release {t}')\n"
    instruction = rng.choice(
        [
            f"Create a symlink `{link}` in this folder pointing at the newest release in "
            "releases/.",
            f"Point `{link}` (a symbolic link here) to the latest version under releases/ "
            "(versions are semantic, so v1.10 is newer than v1.9).",
        ]
    )
    test = verifier(
        py_check(
            f"""
import os
assert os.path.islink({link!r})
assert os.path.realpath({link!r}) == os.path.realpath("releases/{newest}")
"""
        )
    )
    turns = [
        ("Let me see which releases exist.", "ls releases"),
        (
            "Sorting the versions semantically to find the newest.",
            "ls releases | sort -V | tail -1",
        ),
        (f"Linking {link} to releases/{newest}.", f"ln -sfn releases/{newest} {link}"),
        (
            "Checking the link resolves.",
            rng.choice([f"readlink {link} && cat {link}/VERSION", f"cat {link}/VERSION"]),
        ),
        done(rng, f"`{link}` now points to releases/{newest}"),
    ]
    return plan(
        "symlink-latest",
        index,
        instruction,
        files,
        test,
        script(f"ln -sfn releases/{newest} {link}"),
        turns,
    )


def _cwd_env(rng: random.Random, index: int) -> TaskPlan:
    svc = rng.choice(SERVICES)
    version = f"{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    registry = rng.choice(["registry.example.com", "ghcr.io/acme", "docker.internal:5000"])
    folder = f"services/{svc}"
    files: dict[str, str | bytes] = {
        f"{folder}/VERSION": version + "\n",
        f"{folder}/Dockerfile": f"FROM python:3.11-slim\nCOPY . /srv/{svc}\n",
        f"{folder}/main.py": f"print('{svc}')\n",
    }
    for other in rng.sample([s for s in SERVICES if s != svc], 2):
        files[f"services/{other}/VERSION"] = f"0.{rng.randint(1, 9)}.0\n"
    out = rng.choice(["build.env", "image.env"])
    line = f"IMAGE={registry}/{svc}:{version}"
    instruction = rng.choice(
        [
            f"In {folder}/, create {out} containing a single line "
            f"IMAGE={registry}/{svc}:<version>, where <version> comes from that folder's VERSION "
            "file.",
            f"Write {folder}/{out} with `IMAGE={registry}/{svc}:<version>`; take the version from "
            f"{folder}/VERSION.",
        ]
    )
    test = verifier(text_is(f"{folder}/{out}", line + "\n"))
    turns = [
        (f"Let me move into {folder} and look around.", f"cd {folder} && ls"),
        (
            "I'll read the version into a variable.",
            'export VERSION="$(cat VERSION)" && echo "$VERSION"',
        ),
        (f"Now writing {out} here.", f'echo "IMAGE={registry}/{svc}:$VERSION" > {out}'),
        ("Checking the file.", f"cat {out}"),
        done(rng, f"{folder}/{out} holds {line}"),
    ]
    if rng.random() < 0.5:
        turns.insert(
            3,
            (
                "Back to the project root to double-check from there.",
                f"cd ../.. && cat {folder}/{out}",
            ),
        )
        turns[4] = ("Confirming the folder contents too.", f"ls {folder}")
    solution = script(f'echo "IMAGE={registry}/{svc}:$(cat {folder}/VERSION)" > {folder}/{out}')
    return plan("cwd-env-persist", index, instruction, files, test, solution, turns)


FAMILIES = [
    Family("organize-by-extension", "move files into per-extension subfolders", _organize),
    Family("rename-by-pattern", "change the extension of matching files", _rename),
    Family("find-delete", "delete files matching a pattern recursively", _find_delete),
    Family("find-list", "write a sorted list of files found by extension and depth", _find_list),
    Family("largest-files", "report the largest files with their sizes", _largest),
    Family("symlink-latest", "point a symlink at the newest semantic version", _symlink),
    Family("cwd-env-persist", "cd and export in one turn, use them in the next", _cwd_env),
]
