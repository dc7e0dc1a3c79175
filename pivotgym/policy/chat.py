"""The chat layer: one template renders SFT, profiling, RL and evaluation alike.

The format is the tag format of Qwen-family models, so the same code serves real Qwen
checkpoints: turns are ``<|im_start|>ROLE\\n ... <|im_end|>\\n``; the tools are listed
in the system turn inside ``<tools></tools>``; an assistant's tool calls are
``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks after its
text; tool results come back as a user turn wrapping ``<tool_response>``.

An assistant turn's tokens (what a policy samples) are everything after
``<|im_start|>assistant\\n`` up to and including ``<|im_end|>``; the newline after it
belongs to the next turn. That split is what keeps rendering prefix-preserving.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pivotgym.policy.engines.base import Sample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Jinja, as ``transformers``' ``apply_chat_template`` runs it. Every literal is an
# expression so that whitespace control never eats a newline. ``arguments`` may be the
# OpenAI JSON string (inserted verbatim) or an object (serialised).
_TOOLS_BLOCK = (
    "{%- if tools -%}"
    "{{- '\\n\\nTools: answer a tool call as <tool_call>\\n' -}}"
    '{{- \'{"name": NAME, "arguments": {...}}\\n</tool_call>\\n<tools>\' -}}'
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- '\\n</tools>' -}}"
    "{%- endif -%}"
)
CHAT_TEMPLATE = (
    "{%- if tools and messages[0].role != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.' -}}"
    + _TOOLS_BLOCK
    + "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}"
    "{{- '<|im_start|>system\\n' + message.content -}}" + _TOOLS_BLOCK + "{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'user' -%}"
    "{{- '<|im_start|>user\\n' + message.content + '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' + (message.content or '') -}}"
    "{%- for call in message.tool_calls or [] -%}"
    "{%- if message.content or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    '{{- \'<tool_call>\\n{"name": "\' + call.function.name + \'", "arguments": \' -}}'
    "{%- if call.function.arguments is string -%}{{- call.function.arguments -}}"
    "{%- else -%}{{- call.function.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message.role == 'tool' -%}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content -}}"
    "{{- '\\n</tool_response><|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<tools>",
    "</tools>",
)

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
GENERATION_PROMPT = "<|im_start|>assistant\n"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class ChatFormat:
    """Token ids of conversations and actions, and generated actions back to messages.

    Built from a Hugging Face tokenizer whose chat template is :data:`CHAT_TEMPLATE` (or
    another prefix-preserving template in the same tag format). Every pipeline renders
    through this class, so SFT, profiling, RL and evaluation see the same ids::

        fmt = ChatFormat(tokenizer)
        prompt = fmt.prompt_ids(messages, tools)       # ends with <|im_start|>assistant\\n
        ids = fmt.action_ids(recorded_assistant_message)  # ends with <|im_end|>
        message = fmt.parse(sample.token_ids)          # the message an env steps with

    ``prompt_ids(prefix) + action_ids(action)`` is the start of the ids of
    ``prefix + [action]``: the tests check it on every turn of the bundled data.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        if not tokenizer.chat_template:
            raise ValueError("the tokenizer has no chat template")
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        missing = [t for t in (*STOP_TOKENS, TOOL_CALL_OPEN, TOOL_CALL_CLOSE) if t not in vocab]
        if missing:
            raise ValueError(f"the tokenizer lacks the special tokens {missing}")
        self.stop_ids: tuple[int, ...] = tuple(vocab[t] for t in STOP_TOKENS)
        """The ids that end an assistant turn: ``<|im_end|>``, then ``<|endoftext|>``."""
        # Tokenizers that do not know their model's context report a huge sentinel.
        limit = tokenizer.model_max_length
        self.context_length: int | None = limit if limit and limit < 10**9 else None
        """Positions the model was trained on (the tokenizer's ``model_max_length``), or
        None when the tokenizer does not say."""

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        """The conversation as text (for reading; feed models :meth:`prompt_ids`)."""
        return self.tokenizer.apply_chat_template(
            list(messages),
            tools=_tools(tools),
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )

    def conversation_ids(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[int]:
        """Token ids of the whole conversation, as SFT trains on it."""
        return self._encode([self.render(messages, tools, add_generation_prompt)])[0]

    def prompt_ids(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """Token ids of the conversation so far, ending with the assistant generation prompt."""
        return self.conversation_ids(messages, tools, add_generation_prompt=True)

    def batch_prompt_ids(
        self,
        conversations: Sequence[Sequence[Mapping[str, Any]]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        each_tools: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    ) -> list[list[int]]:
        """:meth:`prompt_ids` of many conversations, tokenised together (faster); with
        ``each_tools``, conversation ``i`` is shown ``each_tools[i]``."""
        shown = each_tools if each_tools is not None else [tools] * len(conversations)
        texts = [self.render(m, t, True) for m, t in zip(conversations, shown, strict=True)]
        return self._encode(texts)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # What ``apply_chat_template(tokenize=True)`` does: the template writes every
        # special token itself, so the tokenizer adds none.
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def action_text(self, message: Mapping[str, Any]) -> str:
        """One assistant turn as the policy writes it: its text through ``<|im_end|>``."""
        if message.get("role") != "assistant":
            raise ValueError(f"an action is an assistant message, not role {message.get('role')!r}")
        text = self.render([message])
        end = STOP_TOKENS[0] + "\n"
        if not (text.startswith(GENERATION_PROMPT) and text.endswith(end)):
            raise ValueError("the chat template does not render assistant turns in the tag format")
        return text[len(GENERATION_PROMPT) : -1]

    def action_ids(self, message: Mapping[str, Any]) -> list[int]:
        """Token ids of one assistant turn, ``<|im_end|>`` included: what the learner scores."""
        return self._encode([self.action_text(message)])[0]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids with the special tokens kept (tool-call tags are special)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def parse(self, generated: str | Sequence[int] | Sample, first_call: int = 0) -> dict[str, Any]:
        """An OpenAI assistant message from a generated turn; never raises on bad output.

        ``generated`` is the decoded text (special tokens kept, see :meth:`decode`), the
        token ids, or a :class:`~pivotgym.policy.engines.base.Sample`. A turn is complete only
        if it ends with a stop token. Tool calls get ids ``call_<first_call + i>`` and
        their ``arguments`` as ``json.dumps(obj, ensure_ascii=False)``.

        A malformed turn (no stop token, an unclosed or stray tag, text between or after
        calls, bad JSON or JSON nested too deeply to read, a call without a string
        ``name`` or an object ``arguments``) comes back as ``{"role": "assistant",
        "content": <raw text>, "parse_error": <reason>}``, which environments and
        verifiers score 0.

        ``parse(action_ids(m))`` gives ``m`` back (content ``None`` as ``""``) as long as
        its text is unchanged by the tokenizer's normaliser (NFC for Qwen tokenizers)
        and holds no special-token text such as ``<|im_end|>``.
        """
        if isinstance(generated, Sample):
            if generated.finish_reason == "length":
                return _malformed(self.decode(generated.token_ids), "truncated at max_new_tokens")
            generated = generated.token_ids
        if isinstance(generated, str):
            body, complete = _cut_at_stop(generated)
        else:
            ids = list(generated)
            stop = next((i for i, t in enumerate(ids) if t in self.stop_ids), None)
            body = self.decode(ids if stop is None else ids[:stop])
            complete = stop is not None
        if not complete:
            return _malformed(body, "truncated: no stop token")
        return parse_body(body, first_call)


def parse_body(body: str, first_call: int = 0) -> dict[str, Any]:
    """The message of an assistant turn's text without its stop token (see ``parse``)."""
    start = body.find(TOOL_CALL_OPEN)
    content = body if start < 0 else body[:start]
    if TOOL_CALL_CLOSE in content:
        return _malformed(body, f"{TOOL_CALL_CLOSE} without {TOOL_CALL_OPEN}")
    if start < 0:
        return {"role": "assistant", "content": content}
    if content.endswith("\n"):  # the template's separator before the first call
        content = content[:-1]
    calls = []
    rest = body[start:]
    while rest:
        if not rest.startswith(TOOL_CALL_OPEN):
            return _malformed(body, "text after a tool call")
        end = rest.find(TOOL_CALL_CLOSE)
        if end < 0:
            return _malformed(body, f"unclosed {TOOL_CALL_OPEN}")
        payload = rest[len(TOOL_CALL_OPEN) : end]
        if TOOL_CALL_OPEN in payload:
            return _malformed(body, f"nested {TOOL_CALL_OPEN}")
        call, error = _parse_call(payload)
        if error:
            return _malformed(body, error)
        calls.append(
            {"id": f"call_{first_call + len(calls)}", "type": "function", "function": call}
        )
        rest = rest[end + len(TOOL_CALL_CLOSE) :].lstrip()
    return {"role": "assistant", "content": content, "tool_calls": calls}


def _parse_call(payload: str) -> tuple[dict[str, str], str | None]:
    try:
        obj = json.loads(payload, parse_constant=_reject_constant)
    except ValueError as exc:
        return {}, f"bad JSON in tool call: {str(exc)[:80]}"
    except RecursionError:  # json.loads gives up at about 1,000 levels; dumps goes as deep
        return {}, "tool call JSON nested too deeply"
    if not isinstance(obj, dict):
        return {}, "tool call is not a JSON object"
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return {}, "tool call has no name"
    arguments = obj.get("arguments")
    if not isinstance(arguments, dict):
        return {}, "tool call arguments are not a JSON object"
    return {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}, None


def _cut_at_stop(text: str) -> tuple[str, bool]:
    cuts = [i for i in (text.find(t) for t in STOP_TOKENS) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _malformed(text: str, reason: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text, "parse_error": reason}


def _tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    return [dict(t) for t in tools] if tools else None
