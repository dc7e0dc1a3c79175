"""Data at rest: sqlite3 queries, sha256 manifests, finding a corrupted file."""

from __future__ import annotations

import hashlib
import random
import sqlite3

from ..content import CITIES, PRODUCTS, WORDS, paragraph, person
from ..plan import Family, TaskPlan, done, plan, py_check, script, text_is, verifier


def _shop_db(
    rng: random.Random,
) -> tuple[bytes, list[tuple[int, str, str]], list[tuple[int, int, str, float]]]:
    customers = [(i, person(rng), rng.choice(CITIES[:5])) for i in range(1, rng.randint(6, 9))]
    orders = []
    for k in range(rng.randint(15, 25)):
        product, price = rng.choice(PRODUCTS)
        orders.append(
            (k + 1, rng.choice(customers)[0], product, round(price * rng.randint(1, 3), 2))
        )
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
    con.execute(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, product TEXT, amount "
        "REAL)"
    )
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)", customers)
    con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)
    con.commit()
    data = con.serialize()
    con.close()
    return data, customers, orders


def _sqlite(rng: random.Random, index: int) -> TaskPlan:
    data, customers, orders = _shop_db(rng)
    db = rng.choice(["shop.db", "data/shop.sqlite"])
    out = rng.choice(["result.txt", "answer.txt", "spend.txt"])
    kind = rng.choice(["city", "top"])
    if kind == "city":
        city = next(c[2] for c in customers if c[0] == orders[0][1])
        ids = {c[0] for c in customers if c[2] == city}
        total = round(sum(o[3] for o in orders if o[1] in ids), 2)
        want = f"{total:.2f}"
        ask = f"the total order amount of customers from {city} (2 decimals)"
        query = (
            f"SELECT printf('%.2f', SUM(o.amount)) FROM orders o JOIN customers c "
            f"ON c.id = o.customer_id WHERE c.city = '{city}';"
        )
        check = py_check(f"assert abs(float(open({out!r}).read().strip()) - {total!r}) < 0.005")
    else:
        spend: dict[int, float] = {}
        for o in orders:
            spend[o[1]] = spend.get(o[1], 0) + o[3]
        best = max(spend.values())
        if sum(1 for v in spend.values() if abs(v - best) < 1e-9) > 1:
            return _sqlite(rng, index)
        top = next(c[1] for c in customers if abs(spend.get(c[0], 0) - best) < 1e-9)
        want = top
        ask = "the name of the customer with the highest total order amount"
        query = (
            "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
            "GROUP BY c.id ORDER BY SUM(o.amount) DESC LIMIT 1;"
        )
        check = text_is(out, top + "\n")
    instruction = rng.choice(
        [
            f"Using the SQLite database {db}, write {ask} into {out}.",
            f"Query {db} (tables customers and orders) for {ask}; save just the value in {out}.",
        ]
    )
    turns = [
        ("Let me look at the schema.", f"sqlite3 {db} '.schema'"),
        ("A quick look at the data.", f"sqlite3 -header {db} 'SELECT * FROM orders LIMIT 3;'"),
        ("Running the query.", f'sqlite3 {db} "{query}" > {out}'),
        ("Checking the answer.", f"cat {out}"),
        done(rng, f"{out} contains {want}"),
    ]
    if rng.random() < 0.5:
        del turns[1]
    return plan(
        "sqlite-query",
        index,
        instruction,
        {db: data},
        verifier(check),
        script(f'sqlite3 {db} "{query}" > {out}'),
        turns,
    )


def _dist(rng: random.Random, folder: str) -> dict[str, str]:
    names = [f"{w}-{rng.randint(1, 3)}.{rng.randint(0, 9)}.tar.gz" for w in rng.sample(WORDS, 3)]
    names += [rng.choice(["README.txt", "NOTES.md"]), "install.sh"]
    return {f"{folder}/{n}": f"{n}\n{paragraph(rng, 20)}\n" for n in names}


def _sha_manifest(rng: random.Random, index: int) -> TaskPlan:
    folder = rng.choice(["dist", "release", "artifacts"])
    files = _dist(rng, folder)
    manifest = rng.choice(["SHA256SUMS", "checksums.sha256"])
    names = sorted(p.split("/", 1)[1] for p in files)
    instruction = rng.choice(
        [
            f"Create {folder}/{manifest} with the SHA-256 checksum of every file in {folder}/ "
            f"(sha256sum format, file names relative to {folder}/ so `sha256sum -c` works from "
            "there).",
            f"Generate a sha256 manifest {folder}/{manifest} for the files in {folder}/; it must "
            f"verify with `cd {folder} && sha256sum -c {manifest}`.",
        ]
    )
    test = verifier(
        f"cd {folder}",
        f"sha256sum -c --quiet {manifest}",
        py_check(
            f"""
names = [line.split(None, 1)[1].strip() for line in open({manifest!r}) if line.strip()]
listed = sorted(n.lstrip("*").removeprefix("./") for n in names)
assert listed == {names!r}, listed
"""
        ),
    )
    cmd = rng.choice(
        [
            f"cd {folder} && sha256sum * > {manifest}",
            f"cd {folder} && find . -type f ! -name {manifest} | sort | xargs sha256sum > "
            f"{manifest}",
        ]
    )
    turns = [
        ("Let me list the files.", f"ls {folder}"),
        ("Computing checksums from inside the folder so the paths are relative.", cmd),
        ("Verifying the manifest.", f"sha256sum -c {manifest}"),
        done(rng, f"{folder}/{manifest} covers all {len(names)} files and verifies"),
    ]
    return plan(
        "sha256-manifest",
        index,
        instruction,
        dict(files),
        test,
        script(f"cd {folder}", f"sha256sum * > {manifest}"),
        turns,
    )


def _corrupted(rng: random.Random, index: int) -> TaskPlan:
    folder = rng.choice(["downloads", "backup", "mirror"])
    good = _dist(rng, folder)
    manifest = "".join(
        f"{hashlib.sha256(t.encode()).hexdigest()}  {p.split('/', 1)[1]}\n"
        for p, t in sorted(good.items())
    )
    bad = rng.choice(sorted(good))
    files: dict[str, str | bytes] = dict(good)
    files[bad] = good[bad][:-12] + "\x00" * 3 + good[bad][-9:]
    files[f"{folder}/SHA256SUMS"] = manifest
    out = rng.choice(["corrupted.txt", "bad_files.txt"])
    bad_name = bad.split("/", 1)[1]
    instruction = rng.choice(
        [
            f"One of the files in {folder}/ got corrupted in transfer. Check them against "
            f"{folder}/SHA256SUMS and write the bad file's name to {out}.",
            f"Verify {folder}/ with its SHA256SUMS and put the name of the file that fails in "
            f"{out}.",
        ]
    )
    test = verifier(
        py_check(
            f"""
got = [line.strip().removeprefix({folder + "/"!r}) for line in open({out!r}) if line.strip()]
got = [name.removeprefix("./") for name in got]
assert got == [{bad_name!r}], got
"""
        )
    )
    turns = [
        (
            "Let me check the files against the manifest.",
            f"cd {folder} && sha256sum -c SHA256SUMS || true",
        ),
        (
            "Saving the name of the failing file.",
            rng.choice(
                [
                    f"sha256sum -c SHA256SUMS 2>/dev/null | grep FAILED | cut -d: -f1 > ../{out}",
                    f"sha256sum -c SHA256SUMS 2>/dev/null | awk -F: '/FAILED/ {{print $1}}' > "
                    f"../{out}",
                ]
            ),
        ),
        ("Checking.", f"cat ../{out}"),
        done(rng, f"{bad_name} fails its checksum; its name is in {out}"),
    ]
    return plan(
        "find-corrupted",
        index,
        instruction,
        files,
        test,
        script(
            f"cd {folder}",
            f"sha256sum -c SHA256SUMS 2>/dev/null | grep FAILED | cut -d: -f1 > ../{out} || true",
        ),
        turns,
    )


FAMILIES = [
    Family("sqlite-query", "answer a question with a sqlite3 query into a file", _sqlite),
    Family("sha256-manifest", "write a sha256sum manifest that verifies", _sha_manifest),
    Family("find-corrupted", "find the file failing its checksum", _corrupted),
]
