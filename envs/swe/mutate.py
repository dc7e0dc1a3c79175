"""Bugs of the kinds real bugs have, injected into a function by a seeded mutation.

Each operator finds the places in a function where it applies, and a mutation is one
edit of the function's source text at one of them (the rest of the file untouched, so
the bug's diff is a line or two, as a real one is):

- ``flip_comparison``: ``<`` for ``<=`` (and back), ``>`` for ``>=``, ``==`` for ``!=``,
  ``in`` for ``not in``, ``is`` for ``is not``;
- ``flip_boolean``: ``and`` for ``or`` and back;
- ``off_by_one``: an integer in a slice, an index or a ``range`` call one higher (a
  negative one, ``-n``, one nearer zero);
- ``invert_condition``: an ``if``'s or ``while``'s condition negated;
- ``swap_arguments``: the first two positional arguments of a call swapped;
- ``wrong_default``: a parameter's default constant changed (``True`` for ``False``, an
  integer one higher, an empty string for a string);
- ``wrong_constant``: a constant in an expression changed, as a default is, but for
  strings (most are messages and names, which tests seldom check);
- ``drop_statement``: a statement of a body with more than one removed;
- ``drop_return``: ``return x`` made a bare ``return``.

:func:`mutations` lists every mutation of a module's functions; the builder draws from
them with a seed and keeps the ones that the repository's tests catch.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

FLIPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
KINDS = ("flip_comparison", "flip_boolean", "off_by_one", "invert_condition", "swap_arguments",
         "wrong_default", "wrong_constant", "drop_statement", "drop_return")  # fmt: skip


@dataclass(frozen=True)
class Mutation:
    """One edit of a module's source: replace ``source[start:end]`` with ``text``.

    ``function`` is the qualified name of the function it is in, ``line`` its line in the
    module, ``kind`` the operator, ``original`` the text it replaces.
    """

    kind: str
    function: str
    line: int
    start: int
    end: int
    original: str
    text: str

    def apply(self, source: str) -> str:
        return source[: self.start] + self.text + source[self.end :]


class _Offsets:
    def __init__(self, source: str) -> None:
        self.starts = [0]
        for line in source.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def __call__(self, line: int, col: int, source: str) -> int:
        # AST columns count UTF-8 bytes; turn them into characters of the line.
        start = self.starts[line - 1]
        text = source[start : self.starts[line] if line < len(self.starts) else len(source)]
        return start + len(text.encode("utf-8")[:col].decode("utf-8", "replace"))


def _span(node: ast.AST, source: str, offsets: _Offsets) -> tuple[int, int]:
    return (
        offsets(node.lineno, node.col_offset, source),  # type: ignore[attr-defined]
        offsets(node.end_lineno, node.end_col_offset, source),  # type: ignore[attr-defined]
    )


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    try:
        return list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []


def _token_offset(text: str, token: tokenize.TokenInfo) -> tuple[int, int]:
    lines = text.splitlines(keepends=True)
    before = sum(len(line) for line in lines[: token.start[0] - 1])
    start = before + token.start[1]
    end = sum(len(line) for line in lines[: token.end[0] - 1]) + token.end[1]
    return start, end


class _Finder(ast.NodeVisitor):
    def __init__(self, source: str) -> None:
        self.source = source
        self.offsets = _Offsets(source)
        self.scope: list[str] = []
        self.found: list[Mutation] = []

    def _add(self, kind: str, node: ast.AST, start: int, end: int, text: str) -> None:
        if not self.scope:
            return  # functions only (their defaults too): module-level code runs at import
        original = self.source[start:end]
        if original != text:
            line = node.lineno  # type: ignore[attr-defined]
            self.found.append(
                Mutation(kind, ".".join(self.scope), line, start, end, original, text)
            )

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
        for default in defaults:
            if isinstance(default, ast.Constant):
                changed = _changed_constant(default.value)
                if changed is not None:
                    start, end = _span(default, self.source, self.offsets)
                    self._add("wrong_default", default, start, end, changed)
        bodies = [b for b in (node.body,) if len(b) > 1]
        self._drops(bodies)
        self.generic_visit(node)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def _drops(self, bodies: list[list[ast.stmt]]) -> None:
        for body in bodies:
            for stmt in body:
                simple = isinstance(stmt, ast.Expr | ast.Assign | ast.AugAssign | ast.AnnAssign)
                docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                if not simple or docstring:
                    continue
                start, end = _span(stmt, self.source, self.offsets)
                line_start = self.source.rfind("\n", 0, start) + 1
                line_end = self.source.find("\n", end)
                line_end = len(self.source) if line_end < 0 else line_end + 1
                alone = not self.source[line_start:start].strip()
                if alone and not self.source[end:line_end].strip():
                    self._add("drop_statement", stmt, line_start, line_end, "")

    def visit_If(self, node: ast.If | ast.While) -> None:
        start, end = _span(node.test, self.source, self.offsets)
        test = self.source[start:end]
        if isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not):
            inner = _span(node.test.operand, self.source, self.offsets)
            self._add("invert_condition", node, start, end, self.source[inner[0] : inner[1]])
        elif "\n" not in test:
            self._add("invert_condition", node, start, end, f"not ({test})")
        self._drops([b for b in (node.body, node.orelse) if len(b) > 1])
        self.generic_visit(node)

    visit_While = visit_If

    def visit_Compare(self, node: ast.Compare) -> None:
        start, end = _span(node, self.source, self.offsets)
        text = self.source[start:end]
        tokens = _tokens(text)
        for i, token in enumerate(tokens):
            flipped = None
            if token.type == tokenize.OP and token.string in FLIPS:
                flipped, span = FLIPS[token.string], _token_offset(text, token)
            elif token.string == "not" and i + 1 < len(tokens) and tokens[i + 1].string == "in":
                a, _ = _token_offset(text, token)
                _, b = _token_offset(text, tokens[i + 1])
                flipped, span = "in", (a, b)
            elif token.string == "in" and (i == 0 or tokens[i - 1].string != "not"):
                flipped, span = "not in", _token_offset(text, token)
            elif token.string == "is":
                if i + 1 < len(tokens) and tokens[i + 1].string == "not":
                    _, b = _token_offset(text, tokens[i + 1])
                    flipped, span = "is", (_token_offset(text, token)[0], b)
                else:
                    flipped, span = "is not", _token_offset(text, token)
            if flipped is not None:
                self._add("flip_comparison", node, start + span[0], start + span[1], flipped)
                break  # one comparison operator a node: the first
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        start, end = _span(node, self.source, self.offsets)
        text = self.source[start:end]
        word = "and" if isinstance(node.op, ast.And) else "or"
        for token in _tokens(text):
            if token.type == tokenize.NAME and token.string == word:
                a, b = _token_offset(text, token)
                flipped = "or" if word == "and" else "and"
                self._add("flip_boolean", node, start + a, start + b, flipped)
                break
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        parts = [node.slice]
        if isinstance(node.slice, ast.Slice):
            parts = [p for p in (node.slice.lower, node.slice.upper) if p is not None]
        for part in parts:
            self._off_by_one(part)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == "range":
            for arg in node.args[:2]:
                self._off_by_one(arg)
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if len(positional) >= 2 and len(positional) == len(node.args):
            a, b = (_span(x, self.source, self.offsets) for x in positional[:2])
            first, second = self.source[a[0] : a[1]], self.source[b[0] : b[1]]
            between = self.source[a[1] : b[0]]
            if first != second and "\n" not in between:
                self._add("swap_arguments", node, a[0], b[1], second + between + first)
        self.generic_visit(node)

    def _off_by_one(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            start, end = _span(node, self.source, self.offsets)
            self._add("off_by_one", node, start, end, str(node.value + 1))
        elif (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) is int
        ):
            start, end = _span(node, self.source, self.offsets)
            self._add("off_by_one", node, start, end, str(-node.operand.value + 1))

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            start, end = _span(node, self.source, self.offsets)
            if "\n" not in self.source[start:end]:
                self._add("drop_return", node, start, end, "return")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        changed = _changed_constant(node.value)
        if changed is not None and not isinstance(node.value, str):
            start, end = _span(node, self.source, self.offsets)
            self._add("wrong_constant", node, start, end, changed)


def _changed_constant(value: object) -> str | None:
    if value is True:
        return "False"
    if value is False:
        return "True"
    if type(value) is int:
        return str(value + 1)
    if isinstance(value, str) and value:
        return "''"
    return None


def mutations(source: str, function: str | None = None) -> list[Mutation]:
    """Every mutation of the functions of a module's ``source`` (module docstring), or of
    the one named ``function`` (its qualified name), in source order; ``[]`` for a module
    that does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    finder = _Finder(source)
    finder.visit(tree)
    out, seen = [], set()
    for m in sorted(finder.found, key=lambda m: (m.start, m.end, m.kind)):
        if function is not None and m.function != function:
            continue
        if (m.start, m.end, m.text) in seen:
            continue  # a constant in a slice is one edit, however many operators find it
        seen.add((m.start, m.end, m.text))
        try:
            ast.parse(m.apply(source))  # a mutation must leave the module importable
        except SyntaxError:
            continue
        out.append(m)
    return out
