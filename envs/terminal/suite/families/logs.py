"""Log inspection: error counts per service, a time window of lines."""

from __future__ import annotations

import random

from ..content import LOG_MESSAGES, SERVICES
from ..plan import Family, TaskPlan, done, plan, script, text_is, verifier


def _log_lines(rng: random.Random, services: list[str], n: int, start_min: int = 0) -> list[str]:
    lines = []
    t = 9 * 3600 + start_min * 60
    for _ in range(n):
        t += rng.randint(5, 90)
        level = rng.choices(["INFO", "WARN", "ERROR"], [6, 2, 2])[0]
        stamp = f"2023-11-14T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z"
        lines.append(f"{stamp} {level} [{rng.choice(services)}] {rng.choice(LOG_MESSAGES[level])}")
    return lines


def _errors_per_service(rng: random.Random, index: int) -> TaskPlan:
    services = rng.sample(SERVICES, rng.randint(3, 5))
    lines = _log_lines(rng, services, rng.randint(40, 60))
    log = rng.choice(["app.log", "logs/combined.log", "var/log/services.log"])
    counts: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if parts[1] == "ERROR":
            svc = parts[2].strip("[]")
            counts[svc] = counts.get(svc, 0) + 1
    out = rng.choice(["errors_by_service.txt", "error_counts.txt"])
    instruction = rng.choice(
        [
            f"Count the ERROR lines in {log} per service (the name in brackets) and write "
            f"`<service> <count>` lines to {out}, sorted by service name.",
            f"How many errors did each service log? Use {log}; save one line per service with "
            f"errors as `<service> <count>` in {out}, alphabetical by service.",
        ]
    )
    want = "\n".join(f"{s} {counts[s]}" for s in sorted(counts)) + "\n"
    test = verifier(text_is(out, want))
    cmd = rng.choice(
        [
            f"grep ' ERROR ' {log} | awk '{{print $3}}' | tr -d '[]' | sort | uniq -c | "
            f"awk '{{print $2, $1}}' > {out}",
            f'awk \'$2 == "ERROR" {{gsub(/[][]/, "", $3); n[$3]++}} '
            f"END {{for (s in n) print s, n[s]}}' {log} | sort > {out}",
        ]
    )
    turns = [
        ("Let me look at the log format.", f"head -5 {log}"),
        (
            "How many errors in total?",
            rng.choice([f"grep -c ' ERROR ' {log}", f"grep ' ERROR ' {log} | wc -l"]),
        ),
        ("Counting errors per service.", cmd),
        ("Checking the result.", f"cat {out}"),
        done(rng, f"{out} lists the error count of each service"),
    ]
    if rng.random() < 0.5:
        del turns[1]
    return plan(
        "log-errors-per-service",
        index,
        instruction,
        {log: "\n".join(lines) + "\n"},
        test,
        script(
            f"grep ' ERROR ' {log} | awk '{{print $3}}' | tr -d '[]' | sort | uniq -c | "
            f"awk '{{print $2, $1}}' > {out}"
        ),
        turns,
    )


def _time_window(rng: random.Random, index: int) -> TaskPlan:
    services = rng.sample(SERVICES, 3)
    lines = _log_lines(rng, services, rng.randint(50, 70))
    log = rng.choice(["server.log", "logs/app.log"])
    stamps = sorted({line[11:16] for line in lines})
    lo = stamps[len(stamps) // 4]
    hi = stamps[len(stamps) // 2]
    want = [line for line in lines if lo <= line[11:16] <= hi]
    out = rng.choice(
        ["incident.log", "window.log", f"{lo.replace(':', '')}-{hi.replace(':', '')}.log"]
    )
    instruction = rng.choice(
        [
            f"Something went wrong between {lo} and {hi} (UTC, inclusive, whole minutes) on "
            f"2023-11-14. Extract the lines of {log} from that window into {out}.",
            f"Copy all entries of {log} with a timestamp from {lo}:00 to {hi}:59 into {out}, "
            "keeping them in order.",
        ]
    )
    test = verifier(text_is(out, "\n".join(want) + "\n"))
    cmd = rng.choice(
        [
            f'awk \'$1 >= "2023-11-14T{lo}:00Z" && $1 <= "2023-11-14T{hi}:59Z"\' {log} > {out}',
            f'awk \'{{t = substr($1, 12, 5)}} t >= "{lo}" && t <= "{hi}"\' {log} > {out}',
        ]
    )
    turns = [
        ("Let me check the timestamp format.", f"head -3 {log} && tail -2 {log}"),
        (f"Selecting lines from {lo} to {hi} by comparing the ISO timestamps as strings.", cmd),
        (
            "Checking the first and last lines of the extract.",
            f"head -2 {out}; tail -2 {out}; wc -l < {out}",
        ),
        done(rng, f"{out} holds the {len(want)} lines from {lo} to {hi}"),
    ]
    return plan(
        "log-time-window",
        index,
        instruction,
        {log: "\n".join(lines) + "\n"},
        test,
        script(f'awk \'$1 >= "2023-11-14T{lo}:00Z" && $1 <= "2023-11-14T{hi}:59Z"\' {log} > {out}'),
        turns,
    )


FAMILIES = [
    Family("log-errors-per-service", "count ERROR lines per service", _errors_per_service),
    Family("log-time-window", "extract the log lines of a time window", _time_window),
]
