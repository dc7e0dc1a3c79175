"""The chat layer: prefix-preserving ids on the bundled data, and parse(render(x)) == x."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pivotgym
from pivotgym.envs.terminal.env import TerminalEnv
from pivotgym.policy.chat import SPECIAL_TOKENS, STOP_TOKENS, ChatFormat
from pivotgym.policy.engines.base import Sample
from tests.tiny_models import tiny_tokenizer

TOOLS = TerminalEnv.tools


@pytest.fixture(scope="module")
def fmt() -> ChatFormat:
    return ChatFormat(tiny_tokenizer())


@pytest.fixture(scope="module")
def trajectories() -> list[pivotgym.Trajectory]:
    return pivotgym.load_trajectories("terminal", split="train")


def normalised(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message as the template sees it: no content and "" render alike."""
    out = {"role": "assistant", "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
    return out


@pytest.mark.parametrize("stride", [pytest.param(1, marks=pytest.mark.slow), 8])
def test_every_bundled_turn_is_prefix_preserving_and_parses_back(fmt, trajectories, stride) -> None:
    """Every turn of every ``stride``-th trajectory (all of them in the slow run)."""
    trajectories = trajectories[::stride]
    turns = [(traj, t) for traj in trajectories for t in range(traj.num_turns)]
    assert len(turns) > 1000
    prompts = fmt.batch_prompt_ids([traj.prefix(t) for traj, t in turns], TOOLS)
    with_action = fmt._encode(
        [fmt.render([*traj.prefix(t), traj.action(t)], TOOLS) for traj, t in turns]
    )
    whole = {
        traj.id: ids
        for traj, ids in zip(
            trajectories,
            fmt._encode([fmt.render(traj.messages, TOOLS) for traj in trajectories]),
            strict=True,
        )
    }
    calls_before: dict[str, int] = {}
    for (traj, t), prompt, rendered in zip(turns, prompts, with_action, strict=True):
        action = traj.action(t)
        ids = fmt.action_ids(action)
        assert ids[-1] == fmt.stop_ids[0]
        joined = prompt + ids
        assert rendered[: len(joined)] == joined, (traj.id, t)
        assert whole[traj.id][: len(joined)] == joined, (traj.id, t)
        first = calls_before.get(traj.id, 0)
        assert fmt.parse(ids, first_call=first) == action, (traj.id, t)
        calls_before[traj.id] = first + len(action.get("tool_calls") or [])


def test_prompt_ids_are_apply_chat_template_with_generation_prompt(fmt, trajectories) -> None:
    traj = trajectories[0]
    expected = fmt.tokenizer.apply_chat_template(
        traj.prefix(1), tools=TOOLS, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    assert fmt.prompt_ids(traj.prefix(1), TOOLS) == list(expected)
    assert fmt.batch_prompt_ids([traj.prefix(1)], TOOLS) == [list(expected)]
    assert fmt.decode(expected).endswith("<|im_start|>assistant\n")


def test_stop_ids_are_im_end_then_endoftext(fmt) -> None:
    vocab = fmt.tokenizer.get_vocab()
    assert fmt.stop_ids == (vocab["<|im_end|>"], vocab["<|endoftext|>"])


def test_action_ids_reject_other_roles(fmt) -> None:
    with pytest.raises(ValueError, match="assistant"):
        fmt.action_ids({"role": "user", "content": "hi"})


def test_a_tokenizer_without_template_is_refused() -> None:
    tokenizer = tiny_tokenizer()
    template = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        with pytest.raises(ValueError, match="chat template"):
            ChatFormat(tokenizer)
    finally:
        tokenizer.chat_template = template


CALL = '<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n</tool_call>'


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Let me look." + "\n" + CALL, "truncated"),
        ('<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}<|im_end|>', "unclosed"),
        (
            '<tool_call>\n{"name": "bash", "arguments": {"command": "ls"</tool_call><|im_end|>',
            "JSON",
        ),
        ('<tool_call>\n["bash"]\n</tool_call><|im_end|>', "not a JSON object"),
        ('<tool_call>\n{"arguments": {}}\n</tool_call><|im_end|>', "no name"),
        ('<tool_call>\n{"name": "", "arguments": {}}\n</tool_call><|im_end|>', "no name"),
        ('<tool_call>\n{"name": "bash", "arguments": "ls"}\n</tool_call><|im_end|>', "arguments"),
        ('<tool_call>\n{"name": "bash"}\n</tool_call><|im_end|>', "arguments"),
        ('<tool_call>\n{"name": "f", "arguments": {"x": NaN}}\n</tool_call><|im_end|>', "JSON"),
        (CALL + "\nDone.<|im_end|>", "text after"),
        ("All good </tool_call><|im_end|>", "without"),
        ("<tool_call>\n<tool_call>\n" + CALL[12:] + "<|im_end|>", "nested"),
    ],
)
def test_malformed_generations_come_back_with_a_reason(fmt, text, reason) -> None:
    message = fmt.parse(text)
    assert message["role"] == "assistant"
    assert "tool_calls" not in message
    assert reason in message["parse_error"]
    assert message == fmt.parse(fmt.tokenizer.encode(text, add_special_tokens=False))


def test_deeply_nested_call_payload_is_malformed_not_a_recursion_error(fmt) -> None:
    arguments = "[" * 1100 + "]" * 1100
    text = '<tool_call>\n{"name": "bash", "arguments": ' + arguments + "}\n</tool_call><|im_end|>"
    message = fmt.parse(text)
    assert message["role"] == "assistant" and "tool_calls" not in message
    assert "nested too deeply" in message["parse_error"]
    assert message == fmt.parse(fmt.tokenizer.encode(text, add_special_tokens=False))


def test_a_sample_cut_by_length_is_truncated_even_when_its_text_looks_whole(fmt) -> None:
    ids = fmt.action_ids({"role": "assistant", "content": "Done."})
    sample = Sample(tuple(ids), (0.0,) * len(ids), fmt.decode(ids), "length", "0")
    assert "truncated" in fmt.parse(sample)["parse_error"]
    whole = Sample(tuple(ids), (0.0,) * len(ids), fmt.decode(ids), "stop", "0")
    assert fmt.parse(whole) == {"role": "assistant", "content": "Done."}


def test_endoftext_also_ends_a_turn_and_trailing_text_is_ignored(fmt) -> None:
    assert fmt.parse("Done.<|endoftext|>") == {"role": "assistant", "content": "Done."}
    assert fmt.parse("Done.<|im_end|>\n<|im_start|>user") == {
        "role": "assistant",
        "content": "Done.",
    }


def test_several_calls_are_numbered_from_first_call(fmt) -> None:
    message = fmt.parse(f"{CALL}\n{CALL}<|im_end|>", first_call=4)
    assert [c["id"] for c in message["tool_calls"]] == ["call_4", "call_5"]
    assert message["content"] == ""


# -- properties ------------------------------------------------------------------------

MARKERS = (*SPECIAL_TOKENS, *STOP_TOKENS)
# Tokenizers normalise text to NFC on the way in (Qwen's and the tiny one), so only
# NFC text survives a round trip through ids.
free_text = st.text(max_size=60).filter(
    lambda s: not any(m in s for m in MARKERS) and unicodedata.normalize("NFC", s) == s
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | free_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(free_text, inner, max_size=3),
    max_leaves=8,
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@st.composite
def assistant_messages(draw: st.DrawFn) -> dict[str, Any]:
    content = draw(st.none() | free_text)
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {
                "name": draw(names),
                "arguments": json.dumps(
                    draw(st.dictionaries(free_text, json_values, max_size=4)), ensure_ascii=False
                ),
            },
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return message


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(message=assistant_messages())
def test_parse_inverts_render(fmt, message) -> None:
    assert fmt.parse(fmt.action_text(message)) == normalised(message)
    assert fmt.parse(fmt.action_ids(message)) == normalised(message)


@FAST
@given(system=free_text, user=free_text, message=assistant_messages(), tools=st.booleans())
def test_rendering_is_prefix_preserving_for_any_text(fmt, system, user, message, tools) -> None:
    prefix = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    joined = fmt.prompt_ids(prefix, TOOLS if tools else None) + fmt.action_ids(message)
    whole = fmt.conversation_ids([*prefix, message], TOOLS if tools else None)
    assert whole[: len(joined)] == joined


@FAST
@given(text=st.text(max_size=200), ids=st.lists(st.integers(0, 1023), max_size=60))
def test_parse_never_raises(fmt, text, ids) -> None:
    for generated in (text, text + "<|im_end|>", ids, [*ids, fmt.stop_ids[0]]):
        message = fmt.parse(generated)
        assert message["role"] == "assistant"
        assert not ("parse_error" in message and "tool_calls" in message)
