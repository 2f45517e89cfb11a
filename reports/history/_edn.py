"""The part of EDN that Jepsen histories use: read it, and write flat op maps.

Jepsen writes ``history.edn`` as one op map per line (``{:index 0, :type
:invoke, :f :add, :value 1, :process 0, :time 0}``); elle-cli also accepts a
vector of maps. The reader handles every EDN form such a file can hold (maps,
vectors, lists, sets, keywords, symbols, strings, characters, integers with an
optional ``N``, floats, ``nil``, booleans, ``#_`` discards, tagged literals such
as ``#jepsen.history.Op{...}``, comments), and turns keywords into plain strings
without their colon. It is a tokenizer and a stack, linear in the input;
nesting depth is bounded, so a hostile file cannot exhaust the stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["EdnError", "dumps_op", "read_forms"]

MAX_DEPTH = 64

_TOKEN = re.compile(r"""
    (?P<space>[\s,]+|;[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<open>\#\{|[\[{(])
  | (?P<close>[\]})])
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][^\s,{}\[\]()"]*)
  | (?P<char>\\(?:newline|space|tab|return|formfeed|backspace|u[0-9a-fA-F]{4}|.))
  | (?P<atom>[^\s,{}\[\]()";]+)
""", re.VERBOSE | re.DOTALL)
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "formfeed": "\f",
          "backspace": "\b"}
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}


class EdnError(ValueError):
    """Text that is not EDN; ``line`` is where the problem was found (from 1)."""

    def __init__(self, message: str, line: int) -> None:
        self.line = line
        super().__init__(message)


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code in _ESCAPES:
        return _ESCAPES[code]
    return chr(int(code[1:], 16)) if len(code) == 5 and code[0] == "u" else code


def _string(token: str) -> str:
    body = token[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _unescape, body, flags=re.DOTALL)


def _atom(token: str) -> Any:
    if token == "nil":
        return None
    if token == "true":
        return True
    if token == "false":
        return False
    if token[0] == ":":
        return token[1:]
    if _INT.fullmatch(token):
        return int(token.rstrip("N"))
    if _FLOAT.fullmatch(token):
        return float(token.rstrip("M"))
    return token  # a symbol


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((repr(k), repr(v)) for k, v in value.items()))
    return value


def read_forms(text: str) -> Iterator[Any]:
    """Yield the top-level forms of an EDN text, one by one.

    Args:
        text: EDN.

    Yields:
        Python values: dict, list (vectors, lists and sets), str (strings,
        keywords without their colon, symbols), int, float, bool, None.

    Raises:
        EdnError: unbalanced brackets, an odd map, an unterminated string,
            nesting deeper than ``MAX_DEPTH``, or a character EDN does not allow.
    """
    stack: list[tuple[str, list[Any], int]] = []  # (opener, items, line)
    discard = 0  # how many coming forms #_ drops
    pos, end = 0, len(text)

    def line_at(at: int) -> int:
        return text.count("\n", 0, at) + 1

    while pos < end:
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == '"':
                raise EdnError("unterminated string", line_at(pos))
            raise EdnError(f"unexpected character {text[pos]!r}", line_at(pos))
        kind, token = match.lastgroup, match.group()
        start, pos = pos, match.end()
        if kind == "space" or kind == "tag":
            continue  # a tag names the type of the next form; its value is the form
        if kind == "discard":
            discard += 1
            continue
        if kind == "open":
            if len(stack) >= MAX_DEPTH:
                raise EdnError(f"nested deeper than {MAX_DEPTH} levels", line_at(start))
            stack.append((token, [], line_at(start)))
            continue
        if kind == "close":
            if not stack:
                raise EdnError(f"unbalanced {token!r}", line_at(start))
            opener, items, _ = stack.pop()
            if _CLOSER[opener] != token:
                raise EdnError(f"{opener!r} closed by {token!r}", line_at(start))
            if opener == "{":
                if len(items) % 2:
                    raise EdnError("a map with an odd number of forms", line_at(start))
                value: Any = {_hashable(items[i]): items[i + 1]
                              for i in range(0, len(items), 2)}
            else:
                value = items
        elif kind == "string":
            value = _string(token)
        elif kind == "char":
            name = token[1:]
            value = _CHARS.get(name) or (chr(int(name[1:], 16)) if len(name) == 5
                                          and name[0] == "u" else name)
        else:
            value = _atom(token)
        if discard:
            discard -= 1
            continue
        if stack:
            stack[-1][1].append(value)
        else:
            yield value
    if stack:
        raise EdnError(f"{stack[-1][0]!r} opened on line {stack[-1][2]} is never closed",
                       line_at(end))


def _edn(value: Any, keyword: bool = False) -> str:
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if keyword:
            return ":" + value
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace(
            "\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'
    if isinstance(value, list | tuple):
        return "[" + " ".join(_edn(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as EDN")


def dumps_op(op: Iterable[tuple[str, Any]], keywords: frozenset[str]) -> str:
    """One flat op map as EDN: ``{:index 0, :type :invoke, ...}``.

    Args:
        op: (key, value) pairs; keys become keywords.
        keywords: keys whose string values are written as keywords (``type``, ``f``).

    Returns:
        The map on one line, without a newline.
    """
    return "{" + ", ".join(f":{k} {_edn(v, k in keywords)}" for k, v in op) + "}"
