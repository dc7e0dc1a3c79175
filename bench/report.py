"""What every benchmark does with its numbers: a table on stdout and a JSON file.

Benchmarks compare sides measured in the same run; :func:`ratio_line` says whether
the measured side is within its target multiple of the baseline.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows under headers, the first column left-aligned and the rest right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = (v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(line(list(headers)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def timing_rows(
    seconds: Mapping[str, Sequence[float]], baseline: str
) -> tuple[list[str], list[list[Any]]]:
    """Median, min and max per side, and each median as a multiple of the baseline's."""
    base = statistics.median(seconds[baseline])
    headers = ["side", "median s", "min s", "max s", "vs base"]
    rows = [
        [name, statistics.median(t), min(t), max(t), f"{statistics.median(t) / base:.2f}x"]
        for name, t in seconds.items()
    ]
    return headers, rows


def count_verdict(tally: dict[str, Counter], kind: str, accept: bool, verdict: Any) -> None:
    """Count a verifier's ``verdict`` on a sample of ``kind`` whose right verdict is
    ``accept`` (an infrastructure verdict is never right)."""
    right = (verdict.reward == 1.0) == accept and not verdict.infra_error
    tally.setdefault(kind, Counter())["right" if right else "wrong"] += 1
    tally[kind]["accept" if accept else "reject"] += 1


def verdict_report(name: str, tally: Mapping[str, Mapping[str, int]], **extra: Any) -> float:
    """A verifier's verdicts on a labelled sample: per kind of edit, its right verdict,
    how many samples and the share the verifier got right; printed, written as ``name``,
    and the overall share returned. ``tally[kind]`` counts ``right``, ``wrong`` and
    ``accept`` (or ``reject``), the right verdict."""
    rows, right, total = [], 0, 0
    for kind, c in sorted(tally.items()):
        n = c.get("right", 0) + c.get("wrong", 0)
        rows.append([kind, "accept" if c.get("accept") else "reject", n,
                     f"{c.get('right', 0) / n:.1%}"])  # fmt: skip
        right, total = right + c.get("right", 0), total + n
    print_table(["edit", "right verdict", "samples", "verifier right"], rows)
    print(f"overall: {right}/{total} = {right / total:.1%} right")
    write_json(name, {**extra, "tally": tally, "accuracy": right / total})
    return right / total


def ratio_line(what: str, ratio: float, target: float) -> str:
    verdict = "meets" if ratio <= target else "misses"
    return f"{what} ratio {ratio:.2f} ({verdict} the {target:g}x target)"


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    versions = {
        "bwrap": ["bwrap", "--version"],
        "docker": ["docker", "version", "--format", "{{.Server.Version}}"],
    }
    for tool, argv in versions.items():
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            info[tool] = out.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            info[tool] = None
    info["gpu"] = _gpu_name()
    return info


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def write_json(name: str, report: Mapping[str, Any]) -> Path:
    """Write ``report`` (plus the host's description) to ``bench/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, **report, "host": host_info()}, indent=2) + "\n")
    print(f"wrote {path}")
    return path
