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

# Jinja, as ``transformers``' ``apply_chat_template`` runs it. Every literal is an
# expression so that whitespace control never eats a newline. ``arguments`` may be the
# OpenAI JSON string (inserted verbatim) or an object (serialised).
_TOOLS_BLOCK = (
    "{%- if tools -%}"
    "{{- '\\n\\nTools: answer a tool call as <tool_call>\\n' -}}"
    "{{- '{\"name\": NAME, \"arguments\": {...}}\\n</tool_call>\\n<tools>' -}}"
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
    "{{- '<tool_call>\\n{\"name\": \"' + call.function.name + '\", \"arguments\": ' -}}"
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
