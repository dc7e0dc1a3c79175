"""Config editing: change keys of .env and .ini files in place."""

from __future__ import annotations

import random

from ..content import SERVICES
from ..plan import Family, TaskPlan, done, plan, py_check, script, verifier


def _env_edit(rng: random.Random, index: int) -> TaskPlan:
    svc = rng.choice(SERVICES)
    env = {
        "APP_NAME": svc,
        "PORT": str(rng.choice([3000, 5000, 8000, 8080])),
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{svc}:secret@db.internal:5432/{svc}",
        "LOG_LEVEL": rng.choice(["debug", "info"]),
        "CACHE_TTL": str(rng.choice([60, 300, 900])),
    }
    keys = list(env)
    rng.shuffle(keys)
    path = rng.choice([".env", "config/.env", f"deploy/{svc}.env"])
    text = "# generated for local development\n" + "".join(f"{k}={env[k]}\n" for k in keys)
    changes = {"DEBUG": "false", "PORT": str(rng.choice([80, 443, 8443, 9000]))}
    if rng.random() < 0.5:
        changes["LOG_LEVEL"] = "warning"
    new_key = rng.choice(["SENTRY_DSN", "REGION"])
    new_val = (
        "https://key@sentry.example.com/42"
        if new_key == "SENTRY_DSN"
        else rng.choice(["eu-west-1", "us-east-2"])
    )
    wanted = {**env, **changes, new_key: new_val}
    listing = ", ".join(f"{k}={v}" for k, v in changes.items())
    instruction = rng.choice(
        [
            f"Prepare {path} for production: set {listing}, and add {new_key}={new_val}. Leave the "
            "other settings as they are.",
            f"Edit {path}: change {listing}; also add a new setting {new_key}={new_val}.",
        ]
    )
    test = verifier(
        py_check(
            f"""
pairs = [l.strip().split("=", 1) for l in open({path!r}) if l.strip() and not l.startswith("#")]
got = dict(pairs)
assert len(pairs) == len(got), "duplicate keys"
assert got == {wanted!r}, got
"""
        )
    )
    if rng.random() < 0.5:
        edit = f"sed -i {' '.join(f'-e s/^{k}=.*/{k}={v}/' for k, v in changes.items())} {path}"
    else:
        edit = "; ".join(f"sed -i 's/^{k}=.*/{k}={v}/' {path}" for k, v in changes.items())
    add = f"echo '{new_key}={new_val}' >> {path}"
    turns = [
        ("Let me see the current settings.", f"cat {path}"),
        ("Updating the existing keys.", edit),
        (f"Adding {new_key}.", add),
        (
            "Checking the file.",
            rng.choice([f"cat {path}", f"grep -E '^({'|'.join([*changes, new_key])})=' {path}"]),
        ),
        done(rng, f"{path} now has {listing} and {new_key}"),
    ]
    solution = script(*(f"sed -i 's/^{k}=.*/{k}={v}/' {path}" for k, v in changes.items()), add)
    return plan("env-config-edit", index, instruction, {path: text}, test, solution, turns)


def _ini_edit(rng: random.Random, index: int) -> TaskPlan:
    path = rng.choice(["settings.ini", "config/app.ini", "service.cfg"])
    db_port = rng.choice([5432, 3306])
    old_host = rng.choice(["localhost", "127.0.0.1", "db-dev.internal"])
    new_host = rng.choice(["db.prod.internal", "10.0.4.12", "postgres.example.net"])
    cache_host = rng.choice(["localhost", "cache-dev.internal"])
    text = (
        f"[server]\nhost = 0.0.0.0\nport = {rng.choice([8000, 8080])}\n\n"
        f"[database]\nhost = {old_host}\nport = {db_port}\nname = {rng.choice(SERVICES)}\n\n"
        f"[cache]\nhost = {cache_host}\nport = 6379\n"
    )
    instruction = rng.choice(
        [
            f"In {path}, point the database at {new_host}: change `host` in the [database] section "
            "only (the other sections have a host key too; don't touch them).",
            f"Update {path} so that [database] host is {new_host}. Nothing else should change.",
        ]
    )
    want = text.replace(f"[database]\nhost = {old_host}", f"[database]\nhost = {new_host}")
    test = verifier(
        py_check(
            f"""
import configparser
got, exp = configparser.ConfigParser(), configparser.ConfigParser()
got.read({path!r}); exp.read_string({want!r})
assert {{s: dict(got[s]) for s in got.sections()}} == {{s: dict(exp[s]) for s in exp.sections()}}
"""
        )
    )
    cmd = rng.choice(
        [
            f"sed -i '/^\\[database\\]/,/^\\[/ s/^host = .*/host = {new_host}/' {path}",
            "python3 - <<'EOF'\nimport re, pathlib\n"
            f"p = pathlib.Path('{path}')\n"
            f"p.write_text(re.sub(r'(\\[database\\]\\nhost = ).*', r'\\g<1>{new_host}', "
            "p.read_text()))\nEOF",
        ]
    )
    turns = [
        ("Let me look at the file.", f"cat {path}"),
        ("Changing host only inside the [database] section.", cmd),
        ("Verifying the result.", rng.choice([f"cat {path}", f"grep -n host {path}"])),
        done(rng, f"[database] host in {path} is now {new_host}"),
    ]
    return plan(
        "ini-config-edit",
        index,
        instruction,
        {path: text},
        test,
        script(f"sed -i '/^\\[database\\]/,/^\\[/ s/^host = .*/host = {new_host}/' {path}"),
        turns,
    )


FAMILIES = [
    Family("env-config-edit", "set and add keys of a .env file", _env_edit),
    Family("ini-config-edit", "change one key of one .ini section", _ini_edit),
]
