"""LLM-as-a-judge: a model decides whether the action is interchangeable with the demonstration.

The judge runs on any :class:`pivotgym.policy.engines.Engine` (token ids in and out) through
the chat layer: the prompt template is rendered by :class:`pivotgym.policy.chat.ChatFormat`,
the reply decoded by it. The template (``system`` and ``user`` strings) receives
``{task}`` (the user's request), ``{state}`` (the last messages before the turn),
``{reference}`` and ``{action}``, each action written as its text and its calls.

The reply must end with a line ``VERDICT: PASS`` or ``VERDICT: FAIL`` (nothing after it
but whitespace); the line before it, if any, becomes the verdict's reason. Any other
reply, or an engine error, is tried once more (with the next seed) and then becomes an
infrastructure failure: a judge that cannot answer says nothing about the action.
Verdicts are cached by the hash of the rendered prompt, which contains the action, so a
repeated sample costs no generation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pivotgym.policy.chat import STOP_TOKENS, ChatFormat
from pivotgym.policy.engines.base import Engine, SamplingParams
from pivotgym.verifiers.base import Message, State, Verdict, Verifier, infra

SYSTEM = (
    "You review one step of an agent working in a terminal. Decide whether the candidate "
    "action is an acceptable substitute for the reference action at this point: it must "
    "have the same effect on the task's progress, though its wording may differ. Answer "
    "with one sentence of justification, then a final line VERDICT: PASS or VERDICT: FAIL."
)
USER = (
    "Task:\n{task}\n\nConversation so far (latest last):\n{state}\n\n"
    "Reference action:\n{reference}\n\nCandidate action:\n{action}"
)
VERDICT_LINE = re.compile(r"^VERDICT: (PASS|FAIL)$")


@dataclass
class JudgeStats:
    generations: int = 0
    retries: int = 0
    cache_hits: int = 0
    unparsable: int = 0


def format_action(action: Message, max_chars: int = 2000) -> str:
    """An assistant turn as the judge reads it: its text, then one line per call."""
    lines = []
    if action.get("content"):
        lines.append(action["content"])
    for call in action.get("tool_calls") or []:
        function = call.get("function") or {}
        lines.append(f"[call {function.get('name')}] {function.get('arguments')}")
    return _clip("\n".join(lines) or "(empty)", max_chars)


def parse_verdict(text: str) -> tuple[bool, str] | None:
    """``(passed, reason)`` from a judge's reply, or ``None`` when it breaks the format."""
    for stop in STOP_TOKENS:
        text = text.split(stop, 1)[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    match = VERDICT_LINE.match(lines[-1])
    if match is None:
        return None
    reason = lines[-2] if len(lines) > 1 else f"judge: {match.group(1)}"
    return match.group(1) == "PASS", _clip(reason, 200)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class Judge(Verifier):
    """PASS earns 1 and FAIL 0; see the module docstring for prompt and parsing rules.

    ``chat`` is the :class:`ChatFormat` of the judge model's tokenizer. ``state_messages``
    prefix messages (after the system prompt) are shown, each cut to ``max_chars``.
    """

    name = "judge"

    def __init__(
        self,
        engine: Engine,
        chat: ChatFormat,
        *,
        system: str = SYSTEM,
        user: str = USER,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        retries: int = 1,
        state_messages: int = 4,
        max_chars: int = 2000,
        cache_size: int = 65536,
        timeout_s: float | None = 300.0,
    ) -> None:
        self.engine = engine
        self.chat = chat
        self.system = system
        self.user = user
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self.retries = retries
        self.state_messages = state_messages
        self.max_chars = max_chars
        self.cache_size = cache_size
        self.timeout_s = timeout_s
        self.stats = JudgeStats()
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Verdict]] = {}

    def messages(self, state: State, action: Message, reference: Message) -> list[Message]:
        """The judge's conversation for one action."""
        shown = [m for m in state.prefix if m["role"] != "system"][-self.state_messages :]
        summary = "\n".join(
            f"[{m['role']}] " + format_action(m, self.max_chars)
            if m["role"] == "assistant"
            else f"[{m['role']}] " + _clip(m.get("content") or "", self.max_chars)
            for m in shown
        )
        fields = {
            "task": _clip(state.instruction, self.max_chars),
            "state": summary or "(nothing yet)",
            "reference": format_action(reference, self.max_chars),
            "action": format_action(action, self.max_chars),
        }
        return [
            {"role": "system", "content": self.system.format(**fields)},
            {"role": "user", "content": self.user.format(**fields)},
        ]

    async def check(self, state, action, calls, reference, reference_calls) -> Verdict:
        messages = self.messages(state, action, reference)
        text = self.chat.render(messages, add_generation_prompt=True)
        key = hashlib.sha256(
            (text + "\0" + json.dumps(action, sort_keys=True, default=str)).encode()
        ).hexdigest()
        if key in self._cache:
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
            return self._cache[key]
        if key in self._inflight:
            self.stats.cache_hits += 1
            return await asyncio.shield(self._inflight[key])
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            verdict = await self._ask(self.chat.prompt_ids(messages))
            if not verdict.infra_error:
                self._cache[key] = verdict
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            future.set_result(verdict)
            return verdict
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            future.exception()
            raise
        finally:
            del self._inflight[key]

    async def _ask(self, prompt_ids: list[int]) -> Verdict:
        problem = ""
        for attempt in range(1 + self.retries):
            if attempt:
                self.stats.retries += 1
            sampling = SamplingParams(
                temperature=self.temperature,
                top_p=1.0,
                top_k=-1,
                max_new_tokens=self.max_new_tokens,
                stop_token_ids=tuple(self.chat.stop_ids),
                seed=self.seed + attempt,
            )
            self.stats.generations += 1
            try:
                (sample,) = await self.engine.generate(prompt_ids, 1, sampling)
            except Exception as exc:  # the engine failed: try again, then report
                problem = f"engine error: {type(exc).__name__}: {str(exc)[:200]}"
                continue
            parsed = parse_verdict(self.chat.decode(sample.token_ids))
            if parsed is not None:
                ok, reason = parsed
                return Verdict(1.0 if ok else 0.0, reason, details={"attempts": attempt + 1})
            self.stats.unparsable += 1
            reply = self.chat.decode(sample.token_ids)[-120:]
            problem = f"unparsable judge reply: {reply!r}"
        return infra(f"judge: {problem}")


def judge_from(engine: Engine, tokenizer: Any, **options: Any) -> Judge:
    """A :class:`Judge` over ``engine`` with the chat format of ``tokenizer``."""
    return Judge(engine, ChatFormat(tokenizer), **options)
