"""Verifiers that compare the action with the demonstration without running anything.

- :class:`Exact`: the strict reward, for ablations: same text, same calls, same argument
  strings byte for byte (call ids aside).
- :class:`ToolCall`: same tools in the same order, arguments equal in canonical form
  (:mod:`pivotgym.verifiers.schema`); ``match="name"`` checks tool names only, the
  paper's coarse SWE rule.
- :class:`Similarity`: same tools, and chosen free-text arguments similar enough.

Similarity metric. The default, ``"ratio"``, is difflib's ``SequenceMatcher.ratio`` on
the two strings with runs of whitespace collapsed: 2·matches / total length, in [0, 1].
It is order-sensitive, which matters for commands (``mv a b`` vs ``mv b a`` differ),
and it degrades smoothly with small edits (a flag, a quote style). ``"token_f1"`` is the
F1 of the two bags of whitespace tokens, order-free, suited to natural-language fields
(queries, messages) where word order varies freely. Both are 1.0 on identical strings
and symmetric.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pivotgym.verifiers.base import Call, State, Verdict, Verifier, failed, passed


def _names(calls: Sequence[Call]) -> list[str]:
    return [c.name for c in calls]


def compare_names(calls: Sequence[Call], reference: Sequence[Call]) -> str | None:
    """``None`` when both call the same tools in the same order, else the reason."""
    if not reference and calls:
        return f"calls {', '.join(_names(calls))}; the demonstration calls no tool"
    if reference and not calls:
        return f"calls no tool; the demonstration calls {', '.join(_names(reference))}"
    if _names(calls) != _names(reference):
        return f"calls {', '.join(_names(calls))}, expected {', '.join(_names(reference))}"
    return None


class Exact(Verifier):
    """1 when the action is the demonstration verbatim: text (``content=True``) and calls.

    Calls match on name and the exact ``arguments`` string; call ids are ignored.
    """

    name = "exact"

    def __init__(self, content: bool = True) -> None:
        self.content = content

    async def check(self, state, action, calls, reference, reference_calls) -> Verdict:
        if self.content and (action.get("content") or "") != (reference.get("content") or ""):
            return failed("text differs from the demonstration")
        wrong = compare_names(calls, reference_calls)
        if wrong:
            return failed(wrong)
        for i, (call, ref) in enumerate(zip(calls, reference_calls, strict=True)):
            if call.raw != ref.raw:
                return failed(f"call {i} ({call.name}): arguments differ as strings")
        return passed("identical to the demonstration")


class ToolCall(Verifier):
    """1 when the action calls the same tools, in order, with canonically equal arguments.

    ``match="name"`` compares tool names only. A turn without calls matches a
    demonstration without calls (any text).
    """

    name = "tool_call"

    def __init__(self, match: str = "arguments") -> None:
        if match not in ("arguments", "name"):
            raise ValueError("match must be 'arguments' or 'name'")
        self.match = match

    async def check(self, state, action, calls, reference, reference_calls) -> Verdict:
        wrong = compare_names(calls, reference_calls)
        if wrong:
            return failed(wrong)
        if self.match == "arguments":
            for i, (call, ref) in enumerate(zip(calls, reference_calls, strict=True)):
                if call.canonical != ref.canonical:
                    keys = _differing_keys(call.canonical, ref.canonical)
                    return failed(f"call {i} ({call.name}): arguments differ ({keys})")
        if not reference_calls:
            return passed("no tool call, as demonstrated")
        return passed("same tool calls" if self.match == "arguments" else "same tools")


def _differing_keys(a: Any, b: Any) -> str:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "values"
    keys = sorted(k for k in set(a) | set(b) if a.get(k, ...) != b.get(k, ...))
    return ", ".join(keys)


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def ratio(a: str, b: str) -> float:
    """difflib's similarity ratio of the whitespace-collapsed strings."""
    a, b = _collapse(a), _collapse(b)
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def token_f1(a: str, b: str) -> float:
    """F1 of the two bags of whitespace-separated tokens."""
    ta, tb = Counter(a.split()), Counter(b.split())
    if not ta and not tb:
        return 1.0
    common = sum((ta & tb).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(ta.values()), common / sum(tb.values())
    return 2 * precision * recall / (precision + recall)


METRICS: dict[str, Callable[[str, str], float]] = {"ratio": ratio, "token_f1": token_f1}


class Similarity(Verifier):
    """Same tools in order, and free-text arguments similar to the demonstration's.

    ``fields`` chooses the compared arguments: a list of argument names (for any tool) or
    a mapping ``{tool: [names]}``; by default every ``string`` property of the tool's
    schema. Other arguments must be canonically equal unless ``other_fields="ignore"``.
    A text-only turn compares its text with the demonstration's (``content=True``).

    The score of an action is the lowest similarity over the compared fields; the
    reward is 1 when it reaches ``threshold`` (0 otherwise), or the score itself with
    ``graded=True``.
    """

    name = "similarity"

    def __init__(
        self,
        fields: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        threshold: float = 0.8,
        metric: str = "ratio",
        graded: bool = False,
        other_fields: str = "exact",
        content: bool = True,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}")
        if other_fields not in ("exact", "ignore"):
            raise ValueError("other_fields must be 'exact' or 'ignore'")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        self.fields = fields
        self.threshold = threshold
        self.metric = METRICS[metric]
        self.graded = graded
        self.other_fields = other_fields
        self.content = content

    def _text_fields(self, state: State, tool: str) -> list[str]:
        if isinstance(self.fields, Mapping):
            return list(self.fields.get(tool, ()))
        if self.fields is not None:
            return list(self.fields)
        schema = state.tool(tool) or {}
        properties = (schema.get("parameters") or {}).get("properties") or {}
        return [
            k for k, v in properties.items() if isinstance(v, dict) and v.get("type") == "string"
        ]

    async def check(self, state, action, calls, reference, reference_calls) -> Verdict:
        wrong = compare_names(calls, reference_calls)
        if wrong:
            return failed(wrong)
        scores: dict[str, float] = {}
        if not reference_calls and self.content:
            scores["content"] = self.metric(
                action.get("content") or "", reference.get("content") or ""
            )
        for i, (call, ref) in enumerate(zip(calls, reference_calls, strict=True)):
            text_fields = self._text_fields(state, call.name)
            a, b = call.canonical, ref.canonical
            for key in sorted(set(a) | set(b)):
                if key in text_fields:
                    va, vb = a.get(key), b.get(key)
                    if isinstance(va, str) and isinstance(vb, str):
                        scores[f"call {i}.{key}"] = self.metric(va, vb)
                    else:
                        scores[f"call {i}.{key}"] = 1.0 if va == vb else 0.0
                elif self.other_fields == "exact" and a.get(key, ...) != b.get(key, ...):
                    return failed(f"call {i} ({call.name}): argument {key} differs")
        if not scores:
            return passed("no free text to compare; same calls")
        field_name, score = min(scores.items(), key=lambda kv: kv[1])
        reward = score if self.graded else float(score >= self.threshold)
        relation = ">=" if score >= self.threshold else "<"
        return Verdict(
            reward,
            f"similarity {score:.2f} {relation} {self.threshold:g} ({field_name})",
            details={"scores": scores},
        )
