"""The ``str_replace_editor`` tool's program, run inside the sandbox by ``python3 -c``.

It speaks SWE-agent's (and OpenHands') editor interface: ``command`` in ``view``,
``create``, ``str_replace``, ``insert`` and ``undo_edit``, with the same argument names,
rules and messages, so that trajectories recorded with those tools read the same here.
Its one argument is the call's arguments as JSON; it prints the observation and exits
non-zero on a refused call. The edit history that ``undo_edit`` pops lives in the
sandbox (``/run/pivotgym/editor.json``), so snapshots, forks and replay carry it.

A directory's listing is sorted (SWE-agent prints ``find``'s order, which depends on
the file system). Standard library only: this runs on the sandbox's Python.
"""

import json
import os
import sys

HISTORY = "/run/pivotgym/editor.json"
WORKDIR = "/testbed"
COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
MAX_RESPONSE_LEN = 16000
TRUNCATED = (
    "<response clipped><NOTE>To save on context only part of this file has been shown to "
    "you. You should retry this tool after you have searched inside the file with `grep -n` "
    "in order to find the line numbers of what you are looking for.</NOTE>"
)
SNIPPET_LINES = 4


class Refused(Exception):
    """A call the tool turns down: its message, and the exit status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def numbered(text, description, first=1):
    """``cat -n`` of ``text`` (cut at the response limit), under a header."""
    if len(text) > MAX_RESPONSE_LEN:
        text = text[:MAX_RESPONSE_LEN] + TRUNCATED
    lines = text.expandtabs().split("\n")
    body = "\n".join(f"{i + first:6}\t{line}" for i, line in enumerate(lines))
    return f"Here's the result of running `cat -n` on {description}:\n" + body + "\n"


def read(path):
    for encoding, errors in (
        (None, None),
        ("utf-8", None),
        ("latin-1", None),
        ("utf-8", "replace"),
    ):
        try:
            with open(path, encoding=encoding, errors=errors) as fh:
                return fh.read(), encoding
        except UnicodeDecodeError as exc:
            problem = exc
    raise Refused(f"Ran into UnicodeDecodeError {problem} while trying to read {path}", 19)


def write(path, text, encoding):
    try:
        with open(path, "w", encoding=encoding or "utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise Refused(f"Ran into {exc} while trying to write to {path}", 20) from None


def history():
    try:
        with open(HISTORY) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def remember(path, text):
    kept = history()
    kept.setdefault(path, []).append(text)
    os.makedirs(os.path.dirname(HISTORY), exist_ok=True)
    with open(HISTORY, "w") as fh:
        json.dump(kept, fh)


def listing(path):
    found = [path]
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        depth = root[len(path) :].count(os.sep) + (root != path)
        names = sorted([*dirs, *(f for f in files if not f.startswith("."))])
        found += [os.path.join(root, n) for n in names]
        if depth >= 1:
            dirs[:] = []
    return "\n".join(found) + "\n"


def view(path, view_range):
    if os.path.isdir(path):
        if view_range:
            raise Refused(
                "The `view_range` parameter is not allowed when `path` points to a directory.", 10
            )
        return (
            f"Here's the files and directories up to 2 levels deep in {path}, excluding hidden "
            f"items:\n{listing(path)}\n"
        )
    text, _ = read(path)
    first = 1
    if view_range:
        if len(view_range) != 2 or not all(isinstance(i, int) for i in view_range):
            raise Refused("Invalid `view_range`. It should be a list of two integers.", 11)
        lines = text.split("\n")
        start, stop = view_range
        if start < 1 or start > len(lines):
            raise Refused(
                f"Invalid `view_range`: {view_range}. Its first element `{start}` should be "
                f"within the range of lines of the file: {[1, len(lines)]}",
                12,
            )
        if stop > len(lines):
            raise Refused(
                f"Invalid `view_range`: {view_range}. Its second element `{stop}` should be "
                f"smaller than the number of lines in the file: `{len(lines)}`",
                13,
            )
        if stop != -1 and stop < start:
            raise Refused(
                f"Invalid `view_range`: {view_range}. Its second element `{stop}` should be "
                f"larger or equal than its first `{start}`",
                14,
            )
        stop = len(lines) if stop == -1 else stop
        text, first = "\n".join(lines[start - 1 : stop]), start
    return numbered(text, path, first)


def create(path, file_text):
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise Refused(f"The parent directory {parent} does not exist. Please create it first.", 21)
    write(path, file_text, None)
    remember(path, file_text)
    return f"File created successfully at: {path}"


def str_replace(path, old_str, new_str):
    text, encoding = read(path)
    text, old_str = text.expandtabs(), old_str.expandtabs()
    new_str = new_str.expandtabs() if new_str is not None else ""
    count = text.count(old_str)
    if count == 0:
        raise Refused(
            f"No replacement was performed, old_str `{old_str}` did not appear verbatim in {path}.",
            15,
        )
    if count > 1:
        lines = [i + 1 for i, line in enumerate(text.split("\n")) if old_str in line]
        raise Refused(
            f"No replacement was performed. Multiple occurrences of old_str `{old_str}` in "
            f"lines {lines}. Please ensure it is unique",
            16,
        )
    if new_str == old_str:
        raise Refused(
            f"No replacement was performed, old_str `{old_str}` is the same as new_str "
            f"`{new_str}`.",
            161,
        )
    edited = text.replace(old_str, new_str)
    write(path, edited, encoding)
    remember(path, text)
    line = text.split(old_str)[0].count("\n")
    start = max(1, line - SNIPPET_LINES)
    stop = min(line + SNIPPET_LINES + new_str.count("\n"), len(edited.splitlines()))
    snippet = "\n".join(edited.split("\n")[start - 1 : stop])
    return (
        f"The file {path} has been edited. "
        + numbered(snippet, f"a snippet of {path}", start)
        + "Review the changes and make sure they are as expected. Edit the file again if "
        "necessary."
    )


def insert(path, insert_line, new_str):
    text, encoding = read(path)
    text, new_str = text.expandtabs(), new_str.expandtabs()
    lines = text.split("\n")
    if insert_line < 0 or insert_line > len(lines):
        raise Refused(
            f"Invalid `insert_line` parameter: {insert_line}. It should be within the range of "
            f"lines of the file: {[0, len(lines)]}",
            17,
        )
    added = new_str.split("\n")
    write(path, "\n".join(lines[:insert_line] + added + lines[insert_line:]), encoding)
    remember(path, text)
    snippet = "\n".join(
        lines[max(0, insert_line - SNIPPET_LINES) : insert_line]
        + added
        + lines[insert_line : insert_line + SNIPPET_LINES]
    )
    return (
        f"The file {path} has been edited. "
        + numbered(snippet, "a snippet of the edited file", max(1, insert_line - SNIPPET_LINES + 1))
        + "Review the changes and make sure they are as expected (correct indentation, no "
        "duplicate lines, etc). Edit the file again if necessary."
    )


def undo_edit(path):
    kept = history()
    if not kept.get(path):
        raise Refused(f"No edit history found for {path}.", 18)
    text = kept[path].pop()
    with open(HISTORY, "w") as fh:
        json.dump(kept, fh)
    write(path, text, None)
    return f"Last edit to {path} undone successfully. {numbered(text, path)}"


def run(arguments):
    command, path = arguments.get("command"), arguments.get("path")
    if not os.path.isabs(path):
        raise Refused(
            f"The path {path} is not an absolute path, it should start with `/`. Maybe you meant "
            f"{os.path.join(WORKDIR, path)}?",
            6,
        )
    exists = os.path.exists(path)
    if not exists and command != "create":
        raise Refused(f"The path {path} does not exist. Please provide a valid path.", 7)
    if exists and command == "create":
        raise Refused(
            f"File already exists at: {path}. Cannot overwrite files using command `create`.",
            8,
        )
    if os.path.isdir(path) and command != "view":
        raise Refused(
            f"The path {path} is a directory and only the `view` command can be used on "
            "directories",
            9,
        )
    if command == "view":
        return view(path, arguments.get("view_range"))
    if command == "create":
        if arguments.get("file_text") is None:
            raise Refused("Parameter `file_text` is required for command: create", 1)
        return create(path, arguments["file_text"])
    if command == "str_replace":
        if arguments.get("old_str") is None:
            raise Refused("Parameter `old_str` is required for command: str_replace", 2)
        return str_replace(path, arguments["old_str"], arguments.get("new_str"))
    if command == "insert":
        if arguments.get("insert_line") is None:
            raise Refused("Parameter `insert_line` is required for command: insert", 3)
        if arguments.get("new_str") is None:
            raise Refused("Parameter `new_str` is required for command: insert", 4)
        return insert(path, arguments["insert_line"], arguments["new_str"])
    return undo_edit(path)


def main():
    arguments = json.loads(sys.argv[1])
    if arguments.get("command") not in COMMANDS:
        print(
            "Unrecognized command {}. The allowed commands for the str_replace_editor tool are: "
            '"view", "create", "str_replace", "insert", "undo_edit"'.format(
                arguments.get("command")
            )
        )
        return 5
    try:
        print(run(arguments))
    except Refused as refused:
        print(refused)
        return refused.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
