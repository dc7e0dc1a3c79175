"""The layers of docs/architecture.md: each package imports only the layers below it.

Every ``import`` of pivotgym in the sources counts, those inside functions too, so a
lazy import cannot hide a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "pivotgym": ROOT / "pivotgym",
    "pivotgym.envs": ROOT / "envs",
    "pivotgym.server": ROOT / "server",
}

# What each layer may import besides itself (the top-level ``pivotgym`` package is the
# public facade, and ``cli`` the command line: both sit above everything).
BELOW = {
    "errors": set(),
    "core": {"errors"},
    "sandbox": {"errors", "core"},
    "harbor": {"errors", "core", "sandbox"},
    "policy": {"errors", "core"},
    "verifiers": {"errors", "core", "policy"},
    "rl": {"errors", "core", "policy"},
    "pivotrl": {"errors", "core", "policy", "verifiers", "rl"},
    "remote": {"errors", "core", "policy", "verifiers"},
    "runs": {
        "errors",
        "core",
        "sandbox",
        "harbor",
        "policy",
        "verifiers",
        "rl",
        "pivotrl",
        "remote",
    },
    "server": {"errors", "core", "sandbox", "policy", "verifiers", "remote"},
    "envs": {"errors", "core", "sandbox", "harbor", "policy", "verifiers"},
}
# The script that pretrains the bundled model reads the terminal env's corpus: the model
# is made from that env's tasks. Nothing else of the policy layer sees an env.
EXCEPTIONS = {("pivotgym.policy.models.pretrain", "pivotgym.envs.terminal.corpus")}


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["pivotgym", "envs"]:
        return "envs"
    return parts[1] if len(parts) > 1 else "pivotgym"


def imports() -> list[tuple[str, str, str]]:
    """``(module, imported module, "file:line")`` for every import of pivotgym."""
    found = []
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            module = ".".join([package, *parts])
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    if node.module == "pivotgym":
                        targets = [f"pivotgym.{a.name}" for a in node.names]
                    else:
                        targets = [node.module] if node.module.startswith("pivotgym.") else []
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names if a.name.startswith("pivotgym.")]
                else:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found += [(module, target, where) for target in targets]
    return found


def test_every_layer_imports_only_the_layers_below_it() -> None:
    found = imports()
    assert len(found) > 300  # the walk saw the sources
    wrong = [
        f"{where}: {module} imports {target}"
        for module, target, where in found
        if layer(module) in BELOW
        and layer(target) != layer(module)
        and layer(target) not in BELOW[layer(module)]
        and (module, target) not in EXCEPTIONS
    ]
    assert not wrong, "\n".join(wrong)


def test_every_package_is_a_known_layer() -> None:
    layers = {layer(module) for module, _, _ in imports()}
    assert layers - {"pivotgym", "cli"} <= set(BELOW)
    assert {"core", "sandbox", "harbor", "policy", "runs", "envs"} <= layers
