"""BrowserGym's high-level action set, as tools: the same names, arguments and defaults.

An agent names elements by their ``bid`` (:file:`observe.js` marks them). Each action
here is a tool whose arguments are BrowserGym's, so a BrowserGym action string maps onto
one call (``click("12")`` is ``{"name": "click", "arguments": {"bid": "12"}}``). Element
actions wait at most :data:`ACTION_TIMEOUT_MS` for their element to be there, visible
and still (BrowserGym waits 500 ms; a loaded machine needs more, and a timeout that
fires on a slow machine only would make the same action answer differently). They
return once the input is delivered: a navigation it sets off is the world's to wait for
(:meth:`~pivotgym.envs.browser.world.BrowserWorld._follow`), not a timeout of the action.
What an action cannot do (no such bid, an element that is hidden or not a field) is an
error message for the agent, raised here as ``ValueError``, never an exception out of
the env.

The world's snapshots tell two kinds apart (:mod:`.world`): ``IN_PAGE`` actions act on
the page's document (replayed after a restore), and ``CHAT`` actions speak to the user;
the rest change what is open (kept as URLs) or wait.
"""

from __future__ import annotations

import re
from typing import Any

ACTION_TIMEOUT_MS = 3_000
BID = re.compile(r"[a-zA-Z]{0,3}\d{1,7}")
BUTTONS = ("left", "middle", "right")
MODIFIERS = ("Alt", "Control", "ControlOrMeta", "Meta", "Shift")


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


_BID = {"type": "string", "description": "the element's bid, as the page text shows it"}
_BUTTON = {"type": "string", "enum": list(BUTTONS), "default": "left"}
_MODS = {"type": "array", "items": {"type": "string", "enum": list(MODIFIERS)}, "default": []}

TOOLS: list[dict[str, Any]] = [
    _tool(
        "click", "Click an element.", {"bid": _BID, "button": _BUTTON, "modifiers": _MODS}, ["bid"]
    ),
    _tool(
        "dblclick",
        "Double-click an element.",
        {"bid": _BID, "button": _BUTTON, "modifiers": _MODS},
        ["bid"],
    ),
    _tool(
        "fill",
        "Replace the text of an input or text area with `value`.",
        {
            "bid": _BID,
            "value": {"type": "string"},
            "enable_autocomplete_menu": {"type": "boolean", "default": False},
        },
        ["bid", "value"],
    ),
    _tool("clear", "Empty an input or text area.", {"bid": _BID}, ["bid"]),
    _tool(
        "select_option",
        "Select one option (or several) of a drop-down list by its text.",
        {
            "bid": _BID,
            "options": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
        },
        ["bid", "options"],
    ),
    _tool("check", "Tick a checkbox or radio button.", {"bid": _BID}, ["bid"]),
    _tool("uncheck", "Untick a checkbox.", {"bid": _BID}, ["bid"]),
    _tool("hover", "Move the mouse over an element.", {"bid": _BID}, ["bid"]),
    _tool("focus", "Focus an element.", {"bid": _BID}, ["bid"]),
    _tool(
        "press",
        "Press a key combination in an element, e.g. 'Enter' or 'Control+a'.",
        {"bid": _BID, "key_comb": {"type": "string"}},
        ["bid", "key_comb"],
    ),
    _tool(
        "scroll",
        "Scroll the page by pixels.",
        {"delta_x": {"type": "number"}, "delta_y": {"type": "number"}},
        ["delta_x", "delta_y"],
    ),
    _tool("keyboard_type", "Type text where the focus is.", {"text": {"type": "string"}}, ["text"]),
    _tool(
        "keyboard_press",
        "Press a key (combination) where the focus is.",
        {"key": {"type": "string"}},
        ["key"],
    ),
    _tool("goto", "Open a URL in the current tab.", {"url": {"type": "string"}}, ["url"]),
    _tool("go_back", "Go back to the previous page of the tab.", {}, []),
    _tool("go_forward", "Go forward to the next page of the tab.", {}, []),
    _tool("new_tab", "Open a new, empty tab and switch to it.", {}, []),
    _tool("tab_close", "Close the current tab.", {}, []),
    _tool(
        "tab_focus", "Switch to the tab of this index.", {"index": {"type": "integer"}}, ["index"]
    ),
    _tool("noop", "Do nothing for a while.", {"wait_ms": {"type": "number", "default": 1000}}, []),
    _tool(
        "send_msg_to_user",
        "Send a message (the answer) to the user; ends the task.",
        {"text": {"type": "string"}},
        ["text"],
    ),
    _tool(
        "report_infeasible",
        "Tell the user the task cannot be done, and why; ends it.",
        {"reason": {"type": "string"}},
        ["reason"],
    ),
]
IN_PAGE = frozenset(
    {
        "click",
        "dblclick",
        "fill",
        "clear",
        "select_option",
        "check",
        "uncheck",
        "hover",
        "focus",
        "press",
        "scroll",
        "keyboard_type",
        "keyboard_press",
    }
)
CHAT = frozenset({"send_msg_to_user", "report_infeasible"})


def check_arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments with defaults filled in; ``ValueError`` naming the first bad
    one (unknown, missing, of the wrong type)."""
    schema = next(t for t in TOOLS if t["function"]["name"] == name)["function"]["parameters"]
    properties = schema["properties"]
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ValueError(f"{name}() takes no argument {unknown[0]!r}")
    for required in schema["required"]:
        if required not in arguments:
            raise ValueError(f"{name}() needs the argument {required!r}")
    out = {k: p["default"] for k, p in properties.items() if "default" in p}
    for key, value in arguments.items():
        if not _fits(value, properties[key]):
            raise ValueError(f"{name}(): {key!r} must be {_kind(properties[key])}, not {value!r}")
        out[key] = value
    if "bid" in out and not BID.fullmatch(out["bid"]):
        raise ValueError(f"{out['bid']!r} is not a bid (bids look like '12' in the page text)")
    return out


def _fits(value: Any, prop: dict[str, Any]) -> bool:
    if "anyOf" in prop:
        return any(_fits(value, p) for p in prop["anyOf"])
    kind = prop.get("type")
    if "enum" in prop and value not in prop["enum"]:
        return False
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list) and all(_fits(v, prop["items"]) for v in value)
    return True


def _kind(prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        return " or ".join(_kind(p) for p in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(map(repr, prop["enum"]))
    return {"array": "a list", "integer": "an integer", "number": "a number"}.get(
        prop["type"], f"a {prop['type']}"
    )


async def perform_in_page(page: Any, name: str, args: dict[str, Any]) -> None:
    """Run an ``IN_PAGE`` action on ``page``; ``ValueError`` with what went wrong."""
    from playwright.async_api import Error

    try:
        if name == "scroll":
            await page.mouse.wheel(args["delta_x"], args["delta_y"])
            return
        if name == "keyboard_type":
            await page.keyboard.type(args["text"])
            return
        if name == "keyboard_press":
            await page.keyboard.press(args["key"])
            return
        element = page.locator(f'[bid="{args["bid"]}"]')
        if await element.count() == 0:
            raise ValueError(f"no element with bid {args['bid']!r} on this page")
        element = element.first
        timeout = ACTION_TIMEOUT_MS
        quick = {"timeout": timeout, "no_wait_after": True}
        if name in ("click", "dblclick"):
            call = element.click if name == "click" else element.dblclick
            await call(button=args["button"], modifiers=args["modifiers"], **quick)
        elif name == "fill":
            await element.fill(args["value"], **quick)
        elif name == "clear":
            await element.clear(**quick)
        elif name == "select_option":
            await element.select_option(label=args["options"], **quick)
        elif name == "check":
            await element.check(**quick)
        elif name == "uncheck":
            await element.uncheck(**quick)
        elif name == "hover":
            await element.hover(timeout=timeout)
        elif name == "focus":
            await element.focus(timeout=timeout)
        elif name == "press":
            await element.press(args["key_comb"], **quick)
    except Error as exc:
        raise ValueError(f"{name} failed: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """Playwright's message without its call log, and with its locator said as a bid."""
    text = str(exc).split("\n")[0]
    text = re.sub(r"^\w+\.\w+: ", "", text)
    return re.sub(r"locator\('\[bid=\"([^\"]+)\"\]'\)(\.first)?", r"bid '\1'", text)
