"""Text pipelines: counting, columns, dedupe, in-place substitution, tr conversions."""

from __future__ import annotations

import random

from ..content import CITIES, FIRST_NAMES, LAST_NAMES, SERVICES, WORDS, ip, paragraph
from ..plan import Family, TaskPlan, done, plan, py_check, script, text_is, verifier


def _top_n(rng: random.Random, index: int) -> TaskPlan:
    log = rng.choice(["access.log", "logs/access.log", "nginx_access.log"])
    clients = sorted({ip(rng) for _ in range(8)})
    # distinct counts keep the ranking unambiguous
    counts = dict(zip(clients, rng.sample(range(1, 16), len(clients)), strict=True))
    paths = ["/", "/login", "/api/items", "/static/app.js", "/health", "/api/orders"]
    hits = [c for c in clients for _ in range(counts[c])]
    rng.shuffle(hits)
    lines = [
        f"{c} - - [14/Nov/2023:10:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} +0000] "
        f'"GET {rng.choice(paths)} HTTP/1.1" {rng.choice([200, 200, 200, 304, 404, 500])} '
        f"{rng.randint(120, 9000)}"
        for c in hits
    ]
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    k = rng.choice([3, 5])
    files: dict[str, str | bytes] = {log: "\n".join(lines) + "\n"}
    out = rng.choice(["top_ips.txt", "top_clients.txt"])
    want = [(n, c) for c, n in ranked[:k]]
    instruction = rng.choice(
        [
            f"Which {k} client IPs hit us most often? Put them in {out} as `<count> <ip>` lines, "
            f"most requests first. The log is {log}.",
            f"From {log}, write the top {k} IP addresses by number of requests into {out} "
            "(format: count then IP, descending).",
        ]
    )
    test = verifier(
        py_check(
            f"""
rows = [l.split() for l in open({out!r}) if l.strip()]
assert [(int(a), b) for a, b in rows] == {want!r}, rows
"""
        )
    )
    cmd = rng.choice(
        [
            f"awk '{{print $1}}' {log} | sort | uniq -c | sort -rn | head -{k} | awk "
            f"'{{print $1, $2}}' > {out}",
            f"cut -d' ' -f1 {log} | sort | uniq -c | sort -rn | head -{k} | sed 's/^ *//' > {out}",
            f"awk '{{n[$1]++}} END {{for (i in n) print n[i], i}}' {log} | sort -rn | head -{k} "
            f"> {out}",
        ]
    )
    turns = [
        ("Let me look at the log format.", f"head -5 {log}"),
        (f"Counting requests per IP and keeping the top {k}.", cmd),
        ("Checking the result.", f"cat {out}"),
        done(rng, f"{out} has the {k} busiest client IPs with their request counts"),
    ]
    if rng.random() < 0.4:
        turns.insert(1, ("How many requests are there in total?", f"wc -l {log}"))
    solution = script(
        f"awk '{{print $1}}' {log} | sort | uniq -c | sort -rn | head -{k} | awk "
        f"'{{print $1, $2}}' > {out}"
    )
    return plan("top-n-counts", index, instruction, files, test, solution, turns)


def _columns(rng: random.Random, index: int) -> TaskPlan:
    shells = ["/bin/bash", "/bin/sh", "/usr/sbin/nologin", "/bin/zsh", "/bin/false"]
    users = rng.sample([n.lower() for n in FIRST_NAMES], rng.randint(8, 12))
    rows = []
    for i, u in enumerate(users):
        rows.append(f"{u}:x:{1000 + i}:{1000 + i}:{u.title()}:/home/{u}:{rng.choice(shells)}")
    src = rng.choice(["passwd.txt", "users.db", "accounts.txt"])
    files: dict[str, str | bytes] = {src: "\n".join(rows) + "\n"}
    field, label = rng.choice([(7, "login shells"), (6, "home directories"), (1, "user names")])
    values = [r.split(":")[field - 1] for r in rows]
    want = sorted(set(values))
    out = rng.choice(["column.txt", "values.txt", f"{label.split()[-1]}.txt"])
    instruction = rng.choice(
        [
            f"{src} is in /etc/passwd format. Write the distinct {label} (field {field}) to {out}, "
            "sorted, one per line.",
            f"Extract the {label} column from {src} (colon-separated, column {field}), "
            f"deduplicate and sort it, and save to {out}.",
        ]
    )
    test = verifier(text_is(out, "\n".join(want) + "\n"))
    cmd = rng.choice(
        [
            f"cut -d: -f{field} {src} | sort -u > {out}",
            f"awk -F: '{{print ${field}}}' {src} | sort | uniq > {out}",
        ]
    )
    turns = [
        ("Let me look at the file.", f"head -3 {src}"),
        (f"Extracting field {field}, then sorting and deduplicating.", cmd),
        ("Let me verify.", f"cat {out}"),
        done(rng, f"{out} has the {len(want)} distinct {label}"),
    ]
    return plan(
        "column-extract",
        index,
        instruction,
        files,
        test,
        script(f"cut -d: -f{field} {src} | sort -u > {out}"),
        turns,
    )


def _dedupe(rng: random.Random, index: int) -> TaskPlan:
    kind = rng.choice(["emails", "hosts"])
    if kind == "emails":
        pool = [
            f"{first.lower()}.{last.lower().replace('ü', 'u')}@example.com"
            for first, last in zip(
                rng.sample(FIRST_NAMES, 9), rng.sample(LAST_NAMES, 9), strict=True
            )
        ]
        src = rng.choice(["subscribers.txt", "mailing_list.txt"])
    else:
        pool = [f"{s}-{rng.randint(1, 9)}.internal" for s in rng.sample(SERVICES, 9)]
        src = rng.choice(["hosts.txt", "targets.txt"])
    lines = pool + [rng.choice(pool) for _ in range(rng.randint(5, 9))]
    rng.shuffle(lines)
    first_seen = list(dict.fromkeys(lines))
    files: dict[str, str | bytes] = {src: "\n".join(lines) + "\n"}
    in_place = rng.random() < 0.5
    out = src if in_place else rng.choice(["unique.txt", f"dedup_{src}"])
    where = f"in place in {src}" if in_place else f"into {out}"
    instruction = rng.choice(
        [
            f"{src} has duplicate entries. Remove the duplicates {where}, keeping the first "
            "occurrence of each line and the original order.",
            f"Deduplicate {src} {where}; the order of first appearance must be preserved "
            "(so no plain sort).",
        ]
    )
    test = verifier(text_is(out, "\n".join(first_seen) + "\n"))
    target = f"{src}.tmp" if in_place else out
    cmd = rng.choice(
        [
            f"awk '!seen[$0]++' {src} > {target}",
            f"cat -n {src} | sort -k2 -s -u | sort -n | cut -f2- > {target}",
        ]
    )
    if in_place:
        cmd += f" && mv {target} {src}"
    turns = [
        (
            "Let me check how many duplicates there are.",
            rng.choice([f"sort {src} | uniq -d", f"sort {src} | uniq -c | sort -rn | head"]),
        ),
        ("Removing duplicates while keeping first occurrences in order.", cmd),
        ("Verifying.", rng.choice([f"cat {out}", f"wc -l {out} && sort {out} | uniq -d | wc -l"])),
        done(rng, f"{out} now holds each entry once, in original order"),
    ]
    solution_cmd = f"awk '!seen[$0]++' {src} > {target}" + (
        f" && mv {target} {src}" if in_place else ""
    )
    return plan("dedupe-lines", index, instruction, files, test, script(solution_cmd), turns)


def _substitute(rng: random.Random, index: int) -> TaskPlan:
    old = f"{rng.choice(['db', 'pg', 'mysql'])}-{rng.choice(['old', 'legacy', 'primary'])}.internal"
    new = f"{rng.choice(['db', 'postgres'])}-{rng.choice(['new', 'prod', 'main'])}.example.net"
    folder = rng.choice(["conf", "config", "etc"])
    names = rng.sample(SERVICES, rng.randint(3, 4))
    files: dict[str, str | bytes] = {}
    expected: dict[str, str] = {}
    for i, svc in enumerate(names):
        body = [f"# {svc} settings", f"name = {svc}", f"port = {rng.randint(3000, 9000)}"]
        if i < len(names) - 1 or rng.random() < 0.5:
            body.append(f"db_host = {old}")
        if rng.random() < 0.5:
            body.append(f"replica = {old}:5433")
        body.append(f"log_level = {rng.choice(['info', 'debug', 'warn'])}")
        text = "\n".join(body) + "\n"
        files[f"{folder}/{svc}.conf"] = text
        expected[f"{folder}/{svc}.conf"] = text.replace(old, new)
    files[f"{folder}/README"] = f"Configs used to point at {old}.\n"
    expected[f"{folder}/README"] = files[f"{folder}/README"]  # type: ignore[assignment]
    instruction = rng.choice(
        [
            f"The database moved from {old} to {new}. Update every .conf file in {folder}/ "
            "accordingly (edit the files in place; leave the README alone).",
            f"Replace all occurrences of {old} with {new} in {folder}/*.conf.",
        ]
    )
    test = verifier(
        py_check(
            f"""
for path, text in {expected!r}.items():
    assert open(path).read() == text, path
"""
        )
    )
    esc = old.replace(".", r"\.")
    cmd = rng.choice(
        [
            f"sed -i 's/{esc}/{new}/g' {folder}/*.conf",
            f"grep -l '{esc}' {folder}/*.conf | while read -r f; do sed -i 's/{esc}/{new}/g' "
            '"$f"; done',
            f"python3 -c \"import pathlib\nfor p in pathlib.Path('{folder}').glob('*.conf'):\n"
            f"    p.write_text(p.read_text().replace('{old}', '{new}'))\"",
        ]
    )
    turns = [
        ("Let me find where the old host is referenced.", f"grep -rn '{esc}' {folder}"),
        (f"Replacing {old} with {new} in the .conf files.", cmd),
        (
            "Checking that only the README still mentions the old host.",
            rng.choice(
                [
                    f"grep -rn '{esc}' {folder}; grep -c '{new}' {folder}/*.conf",
                    f"grep -rl '{esc}' {folder}; grep -rn '{new}' {folder}",
                ]
            ),
        ),
        done(rng, f"the .conf files in {folder}/ now point to {new}"),
    ]
    return plan(
        "sed-substitute",
        index,
        instruction,
        files,
        test,
        script(f"sed -i 's/{esc}/{new}/g' {folder}/*.conf"),
        turns,
    )


def _crlf(rng: random.Random, index: int) -> TaskPlan:
    names = rng.sample(["import.csv", "notes.txt", "deploy.sh", "hosts.txt", "readme.txt"], 2)
    folder = rng.choice(["from_windows", "shared", "received"])
    files: dict[str, str | bytes] = {}
    lf: dict[str, str] = {}
    for n in names:
        text = "\n".join(paragraph(rng, rng.randint(3, 6)) for _ in range(rng.randint(3, 6))) + "\n"
        files[f"{folder}/{n}"] = text.replace("\n", "\r\n").encode()
        lf[f"{folder}/{n}"] = text
    instruction = rng.choice(
        [
            f"The files in {folder}/ came from a Windows machine. Convert them to Unix (LF) line "
            "endings in place.",
            f"Strip the carriage returns from the files in {folder}/ so they have LF line endings.",
        ]
    )
    test = verifier(
        py_check(
            f"""
for path, text in {lf!r}.items():
    assert open(path, "rb").read().decode() == text, path
"""
        )
    )
    cmd = rng.choice(
        [
            f"sed -i 's/\\r$//' {folder}/*",
            f'for f in {folder}/*; do tr -d \'\\r\' < "$f" > "$f.new" && mv "$f.new" "$f"; done',
        ]
    )
    turns = [
        ("Let me confirm the files have CRLF endings.", f"grep -c $'\\r' {folder}/*"),
        ("Removing the carriage returns in place.", cmd),
        ("Verifying no CR is left.", f"grep -c $'\\r' {folder}/* || true"),
        done(rng, f"the files in {folder}/ now use LF line endings"),
    ]
    return plan(
        "crlf-to-lf",
        index,
        instruction,
        files,
        test,
        script(f"sed -i 's/\\r$//' {folder}/*"),
        turns,
    )


def _case(rng: random.Random, index: int) -> TaskPlan:
    src = rng.choice(["cities.txt", "tags.txt", "labels.txt"])
    pool = list(CITIES) if src == "cities.txt" else list(WORDS)
    items = rng.sample(pool, rng.randint(6, 9))
    mixed = ["".join(ch.upper() if rng.random() < 0.4 else ch.lower() for ch in w) for w in items]
    upper = rng.random() < 0.5
    out = rng.choice(["normalized.txt", f"{'upper' if upper else 'lower'}.txt"])
    want = [m.upper() if upper else m.lower() for m in mixed]
    files: dict[str, str | bytes] = {src: "\n".join(mixed) + "\n"}
    case = "UPPERCASE" if upper else "lowercase"
    instruction = rng.choice(
        [
            f"The capitalisation in {src} is all over the place. Write an all-{case} copy to "
            f"{out}.",
            f"Convert {src} to {case} and save the result as {out} (same lines, same order).",
        ]
    )
    test = verifier(text_is(out, "\n".join(want) + "\n"))
    sets = ("'a-z' 'A-Z'", "'A-Z' 'a-z'")[0 if upper else 1]
    classes = ("'[:lower:]' '[:upper:]'", "'[:upper:]' '[:lower:]'")[0 if upper else 1]
    cmd = rng.choice(
        [
            f"tr {sets} < {src} > {out}",
            f"tr {classes} < {src} > {out}",
            f"awk '{{print {'toupper' if upper else 'tolower'}($0)}}' {src} > {out}",
        ]
    )
    turns = [
        ("Let me look at the input.", f"cat {src}"),
        (f"Converting to {case}.", cmd),
        ("Checking the output.", f"cat {out}"),
        done(rng, f"{out} is the {case} version of {src}"),
    ]
    return plan(
        "case-convert", index, instruction, files, test, script(f"tr {sets} < {src} > {out}"), turns
    )


FAMILIES = [
    Family("top-n-counts", "top-N most frequent values of a log column", _top_n),
    Family("column-extract", "distinct sorted values of one delimited column", _columns),
    Family("dedupe-lines", "remove duplicate lines keeping first occurrences", _dedupe),
    Family("sed-substitute", "in-place replacement across config files", _substitute),
    Family("crlf-to-lf", "convert Windows line endings", _crlf),
    Family("case-convert", "upper/lower-case conversion with tr or awk", _case),
]
