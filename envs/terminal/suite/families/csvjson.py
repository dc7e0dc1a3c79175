"""CSV and JSON wrangling: filter, sum, sort, join; extract and aggregate with jq."""

from __future__ import annotations

import json
import random

from ..content import CATEGORIES, CITIES, FIRST_NAMES, LAST_NAMES, PRODUCTS, person
from ..plan import Family, TaskPlan, done, plan, py_check, script, text_is, verifier

_READ_CSV = """
import csv
def rows(path):
    with open(path, newline="") as f:
        return [[c.strip() for c in r] for r in csv.reader(f) if r]
"""


def _people(rng: random.Random, n: int) -> list[list[str]]:
    cities = rng.sample(CITIES, 4)
    return [
        [str(100 + i), person(rng), rng.choice(cities), str(rng.randint(19, 70))] for i in range(n)
    ]


def _csv_filter(rng: random.Random, index: int) -> TaskPlan:
    src = rng.choice(["people.csv", "members.csv", "customers.csv"])
    data = _people(rng, rng.randint(10, 16))
    city = data[rng.randrange(len(data))][2]
    header = ["id", "name", "city", "age"]
    text = "\n".join(",".join(r) for r in [header, *data]) + "\n"
    out = rng.choice([f"{city.lower()}.csv", "filtered.csv", f"{src[:-4]}_{city.lower()}.csv"])
    want = [header] + [r for r in data if r[2] == city]
    instruction = rng.choice(
        [
            f"From {src}, keep only the rows where city is {city} and write them (with the header "
            f"line) to {out}.",
            f"I need everyone from {city} in {src} as a separate CSV, {out}, header included and "
            "in "
            "the original order.",
        ]
    )
    test = verifier(py_check(_READ_CSV + f"assert rows({out!r}) == {want!r}, rows({out!r})"))
    cmd = rng.choice(
        [
            f"awk -F, 'NR==1 || $3==\"{city}\"' {src} > {out}",
            f"head -1 {src} > {out} && grep ',{city},' {src} >> {out}",
            f"python3 -c \"import csv,sys; r=list(csv.reader(open('{src}'))); "
            f"w=csv.writer(open('{out}','w',newline='')); w.writerow(r[0]); "
            f"w.writerows(x for x in r[1:] if x[2]=='{city}')\"",
        ]
    )
    turns = [
        ("Let me look at the CSV.", f"head -5 {src}"),
        (f"Filtering the rows for {city}, keeping the header.", cmd),
        ("Checking the output.", f"cat {out}"),
        done(rng, f"{out} has the {len(want) - 1} rows for {city} plus the header"),
    ]
    if rng.random() < 0.4:
        turns.insert(1, (f"How many {city} rows are there?", f"grep -c ',{city},' {src}"))
    return plan(
        "csv-filter",
        index,
        instruction,
        {src: text},
        test,
        script(f"awk -F, 'NR==1 || $3==\"{city}\"' {src} > {out}"),
        turns,
    )


def _csv_sum(rng: random.Random, index: int) -> TaskPlan:
    src = rng.choice(["expenses.csv", "ledger.csv", "q3_expenses.csv"])
    cats = rng.sample(CATEGORIES, 4)
    rows = [
        [
            f"2023-{rng.randint(7, 9):02d}-{rng.randint(1, 28):02d}",
            rng.choice(cats),
            f"{rng.randint(500, 90000) / 100:.2f}",
            rng.choice(FIRST_NAMES),
        ]
        for _ in range(rng.randint(12, 20))
    ]
    cat = rows[0][1]
    total = sum(round(float(r[2]) * 100) for r in rows if r[1] == cat) / 100
    text = "date,category,amount,employee\n" + "".join(",".join(r) + "\n" for r in rows)
    out = rng.choice(["total.txt", f"{cat}_total.txt"])
    instruction = rng.choice(
        [
            f"What did we spend on {cat}? Sum the amount column of {src} for that category and "
            f"write just the number to {out}.",
            f"Compute the total amount for category '{cat}' in {src}; save the number (2 decimals "
            f"is fine) in {out}.",
        ]
    )
    test = verifier(
        py_check(f"assert abs(float(open({out!r}).read().strip()) - {total!r}) < 0.005")
    )
    cmd = rng.choice(
        [
            f'awk -F, \'$2=="{cat}" {{s+=$3}} END {{printf "%.2f\\n", s}}\' {src} > {out}',
            f"grep ',{cat},' {src} | cut -d, -f3 | paste -sd+ | bc > {out}",
            "python3 - <<'EOF'\nimport csv\n"
            f"rows = [r for r in csv.DictReader(open('{src}')) if r['category'] == '{cat}']\n"
            f"open('{out}', 'w').write(f\"{{sum(float(r['amount']) for r in rows):.2f}}\\n\")\nEOF",
        ]
    )
    turns = [
        ("Let me look at the data.", f"head -4 {src}"),
        (f"Summing the {cat} amounts.", cmd),
        ("Checking the result.", f"cat {out}"),
        done(rng, f"{out} holds the {cat} total, {total:.2f}"),
    ]
    return plan(
        "csv-sum",
        index,
        instruction,
        {src: text},
        test,
        script(f'awk -F, \'$2=="{cat}" {{s+=$3}} END {{printf "%.2f\\n", s}}\' {src} > {out}'),
        turns,
    )


def _csv_sort(rng: random.Random, index: int) -> TaskPlan:
    src = rng.choice(["products.csv", "catalog.csv", "inventory.csv"])
    chosen = rng.sample(PRODUCTS, rng.randint(7, 10))
    prices = rng.sample(range(500, 30000), len(chosen))
    rows = [
        [
            name,
            rng.choice(["accessory", "display", "audio", "network"]),
            f"{p / 100:.2f}",
            str(rng.randint(0, 300)),
        ]
        for (name, _), p in zip(chosen, prices, strict=True)
    ]
    header = ["name", "category", "price", "stock"]
    column, col_index = rng.choice([("price", 2), ("stock", 3)])
    if column == "stock":
        for r, s in zip(rows, rng.sample(range(0, 500), len(rows)), strict=True):
            r[3] = str(s)
    desc = rng.random() < 0.6
    want = [header, *sorted(rows, key=lambda r: float(r[col_index]), reverse=desc)]
    out = rng.choice(["sorted.csv", f"by_{column}.csv"])
    order = "highest first" if desc else "lowest first"
    instruction = rng.choice(
        [
            f"Sort {src} by {column}, {order}, and write it to {out}. Keep the header on top.",
            f"Produce {out}: the rows of {src} ordered by the {column} column ({order}), header "
            "line first.",
        ]
    )
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    test = verifier(py_check(_READ_CSV + f"assert rows({out!r}) == {want!r}, rows({out!r})"))
    r = "r" if desc else ""
    k = col_index + 1
    cmd = rng.choice(
        [
            f"(head -1 {src}; tail -n +2 {src} | sort -t, -k{k},{k}{r}n) > {out}",
            f"{{ head -n 1 {src}; sed 1d {src} | sort -t, -{r}n -k{k}; }} > {out}",
        ]
    )
    turns = [
        ("Let me see the columns.", f"head -3 {src}"),
        (f"Sorting the data rows numerically on column {k}, header kept first.", cmd),
        ("Checking the sorted file.", f"cat {out}"),
        done(rng, f"{out} is sorted by {column}, {order}"),
    ]
    return plan(
        "csv-sort",
        index,
        instruction,
        {src: text},
        test,
        script(f"(head -1 {src}; tail -n +2 {src} | sort -t, -k{k},{k}{r}n) > {out}"),
        turns,
    )


def _csv_join(rng: random.Random, index: int) -> TaskPlan:
    n = rng.randint(5, 8)
    ids = rng.sample(range(1, 60), n)
    names = {i: f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" for i in ids}
    customers = "customer_id,name,city\n" + "".join(
        f"{i},{names[i]},{rng.choice(CITIES)}\n" for i in ids
    )
    orders = [
        [str(5000 + k), str(rng.choice(ids)), f"{rng.randint(1000, 50000) / 100:.2f}"]
        for k in range(rng.randint(8, 12))
    ]
    orders_text = "order_id,customer_id,total\n" + "".join(",".join(o) + "\n" for o in orders)
    out = rng.choice(["orders_with_names.csv", "report.csv", "joined.csv"])
    want = [["order_id", "name", "total"]] + [[o[0], names[int(o[1])], o[2]] for o in orders]
    instruction = rng.choice(
        [
            f"Join orders.csv with customers.csv on customer_id and write {out} with the columns "
            "order_id,name,total (header included, same order as orders.csv).",
            f"Replace the customer ids in orders.csv with customer names from customers.csv: "
            f"write {out} with header order_id,name,total, one row per order in the original "
            "order.",
        ]
    )
    test = verifier(py_check(_READ_CSV + f"assert rows({out!r}) == {want!r}, rows({out!r})"))
    awk = (
        'awk -F, \'NR==FNR {name[$1]=$2; next} FNR==1 {print "order_id,name,total"; next} '
        f'{{print $1 "," name[$2] "," $3}}\' customers.csv orders.csv > {out}'
    )
    py = (
        "python3 - <<'EOF'\nimport csv\n"
        "names = {r['customer_id']: r['name'] for r in csv.DictReader(open('customers.csv'))}\n"
        f"with open('{out}', 'w', newline='') as f:\n"
        "    w = csv.writer(f)\n    w.writerow(['order_id', 'name', 'total'])\n"
        "    for r in csv.DictReader(open('orders.csv')):\n"
        "        w.writerow([r['order_id'], names[r['customer_id']], r['total']])\nEOF"
    )
    turns = [
        ("Let me look at both files.", "head -4 customers.csv orders.csv"),
        ("Joining on customer_id with a lookup table.", rng.choice([awk, py])),
        ("Checking the joined file.", f"cat {out}"),
        done(rng, f"{out} lists every order with the customer's name"),
    ]
    files: dict[str, str | bytes] = {"customers.csv": customers, "orders.csv": orders_text}
    return plan("csv-join", index, instruction, files, test, script(awk), turns)


def _users(rng: random.Random) -> list[dict[str, object]]:
    roles = ["admin", "editor", "viewer"]
    users = []
    for i, first in enumerate(rng.sample(FIRST_NAMES, rng.randint(7, 11))):
        last = rng.choice(LAST_NAMES)
        users.append(
            {
                "id": 200 + i,
                "name": f"{first} {last}",
                "email": f"{first.lower()}@example.org",
                "role": rng.choice(roles),
                "active": rng.random() < 0.65,
            }
        )
    users[0].update(role="admin", active=True)
    return users


def _json_extract(rng: random.Random, index: int) -> TaskPlan:
    users = _users(rng)
    rng.shuffle(users)
    role = rng.choice(["admin", "editor"])
    if not any(u["role"] == role and u["active"] for u in users):
        users[-1].update(role=role, active=True)
    src = rng.choice(["users.json", "accounts.json"])
    field = rng.choice(["email", "name"])
    want = [str(u[field]) for u in users if u["role"] == role and u["active"]]
    out = rng.choice([f"active_{role}s.txt", f"{field}s.txt"])
    instruction = rng.choice(
        [
            f"List the {field}s of all active users with role {role} from {src} in {out}, "
            "one per line, in file order.",
            f"Extract the {field} of every user in {src} that is active and has the '{role}' role; "
            f"write them to {out}, one per line.",
        ]
    )
    test = verifier(text_is(out, "\n".join(want) + "\n"))
    cmd = rng.choice(
        [
            f"jq -r '.[] | select(.active and .role == \"{role}\") | .{field}' {src} > {out}",
            f"jq -r '.[] | select(.role == \"{role}\" and .active == true).{field}' {src} > {out}",
            f"python3 -c \"import json; print('\\n'.join(u['{field}'] for u in "
            f"json.load(open('{src}')) "
            f"if u['active'] and u['role'] == '{role}'))\" > {out}",
        ]
    )
    turns = [
        (
            "Let me look at the structure of the JSON.",
            rng.choice([f"jq '.[0]' {src}", f"head -12 {src}"]),
        ),
        (f"Selecting active {role}s and printing their {field}.", cmd),
        ("Verifying.", f"cat {out}"),
        done(rng, f"{out} lists the {len(want)} active {role}s"),
    ]
    if rng.random() < 0.4:
        turns.insert(1, ("How many users are there?", f"jq length {src}"))
    return plan(
        "json-extract",
        index,
        instruction,
        {src: json.dumps(users, indent=2) + "\n"},
        test,
        script(f"jq -r '.[] | select(.active and .role == \"{role}\") | .{field}' {src} > {out}"),
        turns,
    )


def _json_count(rng: random.Random, index: int) -> TaskPlan:
    statuses = rng.sample(["pending", "shipped", "delivered", "cancelled", "refunded"], 4)
    orders = [
        {
            "id": f"ord-{1000 + i}",
            "status": rng.choice(statuses),
            "amount": round(rng.uniform(5, 400), 2),
            "customer": person(rng),
        }
        for i in range(rng.randint(10, 18))
    ]
    src = rng.choice(["orders.json", "export.json"])
    counts: dict[str, int] = {}
    for o in orders:
        counts[str(o["status"])] = counts.get(str(o["status"]), 0) + 1
    out = rng.choice(["status_counts.json", "counts.json"])
    instruction = rng.choice(
        [
            f"{src} has an `orders` array. Write a JSON object to {out} mapping each status to "
            'the number of orders with it, e.g. {"shipped": 3, ...}.',
            f"Count the orders per status in {src} and save the result in {out} as a JSON object "
            "(status -> count).",
        ]
    )
    test = verifier(py_check(f"import json\nassert json.load(open({out!r})) == {counts!r}"))
    cmd = rng.choice(
        [
            f"jq '[.orders[].status] | group_by(.) | map({{(.[0]): length}}) | add' {src} > {out}",
            f"jq 'reduce .orders[] as $o ({{}}; .[$o.status] += 1)' {src} > {out}",
            f"python3 -c \"import json, collections; d = json.load(open('{src}')); "
            f"json.dump(collections.Counter(o['status'] for o in d['orders']), open('{out}', "
            "'w'))\"",
        ]
    )
    turns = [
        ("Let me check the JSON structure.", f"jq '.orders | length, .[0]' {src}"),
        ("Counting the orders per status.", cmd),
        ("Checking the output.", f"jq -S . {out}"),
        done(rng, f"{out} maps each status to its order count"),
    ]
    return plan(
        "json-count",
        index,
        instruction,
        {src: json.dumps({"orders": orders}, indent=2) + "\n"},
        test,
        script(f"jq 'reduce .orders[] as $o ({{}}; .[$o.status] += 1)' {src} > {out}"),
        turns,
    )


FAMILIES = [
    Family("csv-filter", "keep CSV rows matching a value, header included", _csv_filter),
    Family("csv-sum", "sum a CSV column over matching rows", _csv_sum),
    Family("csv-sort", "sort a CSV numerically by a column, header first", _csv_sort),
    Family("csv-join", "join two CSV files on a key", _csv_join),
    Family("json-extract", "select JSON records and print a field", _json_extract),
    Family("json-count", "aggregate JSON records into counts per key", _json_count),
]
