"""A finished run's summary: a table on the console and a Markdown page."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, label in (
        ("candidates", "candidates"),
        ("tasks", "tasks"),
        ("trajectories", "trajectories"),
        ("train_steps", "training steps"),
    ):
        if key in report:
            rows.append((label, str(report[key])))
    if "pivots" in report:
        rows.append(("pivots kept", f"{report['pivots']} ({report['kept_fraction']:.0%})"))
    if report.get("beyond_context"):
        rows.append(("candidates beyond the model's context", str(report["beyond_context"])))
    if report.get("beyond_context_examples"):
        rows.append(("trajectories beyond the model's context",
                     str(report["beyond_context_examples"])))  # fmt: skip
    ledger = report.get("ledger", {})
    rows.append(("rollout turns", str(ledger.get("model_calls", 0))))
    rows.append(("wall-clock", f"{report['timings']['total_s']:.0f} s"))
    return rows


def _changes(report: dict[str, Any]) -> list[tuple[str, float, float]]:
    return [
        (label, report[f"{key}_base"], report[f"{key}_final"])
        for label, key in (("in-domain success", "in_domain"), ("out-of-domain accuracy", "ood"))
    ]


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title=escape(f"{report['method']} on {report['env']}"))
    for column in ("", "π0", "trained", "change"):
        table.add_column(column, justify="right")
    for label, value in _summary_rows(report):
        table.add_row(label, value, "", "")
    for label, before, after in _changes(report):
        table.add_row(label, f"{before:.1%}", f"{after:.1%}", f"{100 * (after - before):+.1f} pts")
    table.add_row(_INFRA_LABEL, *(str(n) for n in _infra(report)), "")
    return table


_INFRA_LABEL = "infrastructure failures (episodes not scored)"


def _infra(report: dict[str, Any]) -> tuple[int, int]:
    return report.get("infra_errors_base", 0), report.get("infra_errors_final", 0)


def report_markdown(report: dict[str, Any]) -> str:
    rows = ["| | π0 | trained | change |", "|---|---|---|---|"]
    rows += [f"| {label} | {value} | | |" for label, value in _summary_rows(report)]
    rows += [
        f"| {label} | {before:.1%} | {after:.1%} | {100 * (after - before):+.1f} pts |"
        for label, before, after in _changes(report)
    ]
    rows.append("| {} | {} | {} | |".format(_INFRA_LABEL, *_infra(report)))
    timings = ", ".join(f"{k} {v:.0f}" for k, v in report["timings"].items())
    title = f"# {report['method']} on {report['env']}"
    return title + "\n\n" + "\n".join(rows) + f"\n\nSeconds: {timings}\n"
