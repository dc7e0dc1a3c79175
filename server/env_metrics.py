"""The environment server's counters, in Prometheus' text format (``GET /metrics``)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

# Seconds: a no-op step on loopback takes about a millisecond, a cold reset of a
# repository sandbox tens of seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def lines(self, name: str, labels: str) -> list[str]:
        out, total = [], 0
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            total += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="{le}"}} {total}')
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        out.append(f"{name}_count{{{labels}}} {total}")
        return out


class Metrics:
    """Counters by name and labels, latency histograms by call and env, and gauges read
    when scraped."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], float] = defaultdict(float)
        self.latency: dict[tuple[str, str], Histogram] = defaultdict(Histogram)
        self.gauges: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {}

    def count(self, name: str, value: float = 1, **labels: str) -> None:
        self.counters[(name, _labels(labels))] += value

    def observe(self, call: str, env: str, seconds: float) -> None:
        self.latency[(call, env)].observe(seconds)

    def gauge(self, name: str, help_text: str, read: Callable[[], dict[str, float]]) -> None:
        """``read`` gives the gauge's values by label text (``""`` for none)."""
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        lines: list[str] = []
        names = sorted({name for name, _ in self.counters})
        for name in names:
            lines.append(f"# TYPE pivotgym_env_{name} counter")
            for (n, labels), value in sorted(self.counters.items()):
                if n == name:
                    lines.append(f"pivotgym_env_{name}{{{labels}}} {value:g}")
        lines.append(
            "# HELP pivotgym_env_call_seconds Latency of the server's calls, by call and env."
        )
        lines.append("# TYPE pivotgym_env_call_seconds histogram")
        for (call, env), histogram in sorted(self.latency.items()):
            lines += histogram.lines(
                "pivotgym_env_call_seconds", _labels({"call": call, "env": env})
            )
        for name, (help_text, read) in sorted(self.gauges.items()):
            lines.append(f"# HELP pivotgym_env_{name} {help_text}")
            lines.append(f"# TYPE pivotgym_env_{name} gauge")
            for labels, value in sorted(read().items()):
                lines.append(f"pivotgym_env_{name}{{{labels}}} {value:g}")
        return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
