"""An operation as data: what a swarm user sends and how it reads the answer.

A scenario (``scenarios.counter`` and the others) describes its client side as
a tuple of ``Operation``: method, path, headers, body, a weight for mixed
traffic, how to read the value from the answer, and which HTTP statuses mean
what. The swarm (``loadtests.locustfile``) only ever sends these, so it is not
hard-wired to any one endpoint; ``--request``/``--value`` build them for a
user's own app.

Nothing here does I/O or imports Locust: operations travel to Locust processes
as JSON (``operations_to_json`` / ``operations_from_json``) and the value is
read from a body by ``read_value``, a pure function.

Statuses: ``2xx`` is ``ok``; ``4xx`` is ``fail`` (the server refused the
request: no effect); ``3xx`` (a redirect, never followed) and ``5xx`` are
``info`` (the effect is unknown). ``Operation.statuses`` overrides that per
status (the tickets scenario's ``409 sold out`` is a ``fail`` with its status
recorded).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "SERVER_HEADERS",
    "Operation",
    "OperationError",
    "ValueSpec",
    "operations_from_json",
    "operations_to_json",
    "outcome_for_status",
    "parse_request",
    "parse_value_spec",
    "read_value",
    "schedule",
]

#: Response headers the stamping middleware sets (``demo_server.served.stamp``); the
#: swarm takes the server's facts from them, else from the JSON body's keys.
SERVER_HEADERS = {
    "pid": "X-Racelab-Pid",
    "tid": "X-Racelab-Tid",
    "arrival_ns": "X-Racelab-Arrival-Ns",
    "departure_ns": "X-Racelab-Departure-Ns",
}

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_OUTCOMES = ("ok", "fail", "info")


class OperationError(ValueError):
    """An operation, request line or value spec that cannot be used, in one sentence."""


@dataclasses.dataclass(frozen=True)
class ValueSpec:
    """How to read an integer value from an answer.

    Attributes:
        kind: ``json`` (a dotted path into a JSON body), ``text`` (the whole
            body is an integer), ``regex`` (the first group of a pattern), or
            ``none`` (the operation returns no value).
        arg: the dotted path or the pattern.
    """

    kind: str = "json"
    arg: str = "value"

    def __str__(self) -> str:
        return self.kind if self.kind in ("text", "none") else f"{self.kind}:{self.arg}"


def parse_value_spec(text: str) -> ValueSpec:
    """``text``, ``none``, ``json:KEY.PATH`` or ``regex:PATTERN`` as a ``ValueSpec``.

    Raises:
        OperationError: anything else, or a pattern without a group.
    """
    text = text.strip()
    if text in ("text", "none"):
        return ValueSpec(text, "")
    kind, sep, arg = text.partition(":")
    if not sep or kind not in ("json", "regex") or not arg:
        raise OperationError(
            f"value {text!r}: expected text, none, json:KEY (a dotted path) or regex:PATTERN"
        )
    if kind == "regex":
        try:
            pattern = re.compile(arg)
        except re.error as exc:
            raise OperationError(f"value {text!r}: not a regular expression ({exc})") from None
        if pattern.groups < 1:
            raise OperationError(f"value {text!r}: the pattern needs a group, e.g. 'n=(\\d+)'")
    return ValueSpec(kind, arg)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One kind of request a swarm user makes.

    Attributes:
        name: the history's ``op`` column (Jepsen's ``:f``), e.g. ``incr``.
        method: the HTTP method.
        path: path and query, starting with ``/``.
        headers: extra request headers, as (name, value) pairs.
        body: the request body (UTF-8 text; empty for none).
        weight: relative frequency among the operations of one swarm.
        value: how to read the value from a ``2xx`` answer.
        statuses: (status, outcome) pairs that override the default mapping.
    """

    name: str = "incr"
    method: str = "GET"
    path: str = "/incr"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    weight: int = 1
    value: ValueSpec = ValueSpec()
    statuses: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", self.name):
            raise OperationError(f"operation name {self.name!r}: letters, digits, _ . - only")
        if self.method not in _METHODS:
            raise OperationError(
                f"method {self.method!r}: choose one of {', '.join(_METHODS)}"
            )
        if not self.path.startswith("/") or any(c in self.path for c in " \r\n"):
            raise OperationError(f"path {self.path!r}: must start with / and hold no spaces")
        if not 1 <= self.weight <= 1000:
            raise OperationError(f"weight {self.weight}: must be between 1 and 1000")
        for name, value in self.headers:
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name) or any(
                c in value for c in "\r\n"
            ):
                raise OperationError(f"header {name!r}: not a valid header line")
        for status, outcome in self.statuses:
            if not 100 <= status <= 599 or outcome not in _OUTCOMES:
                raise OperationError(f"status {status} -> {outcome!r}: not a status and outcome")

    def request_bytes(self, host: str) -> bytes:
        """The whole HTTP/1.1 request for ``host`` (``name:port``), ready to send."""
        body = self.body.encode("utf-8")
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        names = {name.lower() for name, _ in self.headers}
        lines += [f"{name}: {value}" for name, value in self.headers]
        if body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        if body and "content-type" not in names:
            kind = "application/json" if self.body.lstrip()[:1] in ("{", "[") else "text/plain"
            lines.append(f"Content-Type: {kind}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def outcome(self, status: int) -> str:
        """``ok``, ``fail`` or ``info`` for an answer with this status."""
        return outcome_for_status(status, self.statuses)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["value"] = str(self.value)
        data["headers"] = [list(h) for h in self.headers]
        data["statuses"] = [list(s) for s in self.statuses]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operation:
        try:
            return cls(
                name=str(data.get("name", "incr")),
                method=str(data.get("method", "GET")).upper(),
                path=str(data.get("path", "/")),
                headers=tuple((str(k), str(v)) for k, v in data.get("headers", ())),
                body=str(data.get("body", "")),
                weight=int(data.get("weight", 1)),
                value=parse_value_spec(str(data.get("value", "json:value"))),
                statuses=tuple((int(s), str(o)) for s, o in data.get("statuses", ())),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, OperationError):
                raise
            raise OperationError(f"operation {dict(data)!r}: {exc}") from None


def outcome_for_status(status: int, overrides: Iterable[tuple[int, str]] = ()) -> str:
    """The default status mapping (module docstring), with per-status overrides."""
    for code, outcome in overrides:
        if code == status:
            return outcome
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "fail"
    return "info"


def parse_request(text: str, *, name: str | None = None, weight: int = 1,
                  body: str = "", headers: Sequence[tuple[str, str]] = (),
                  value: ValueSpec | None = None) -> Operation:
    """``"METHOD /path"`` (optionally ``"METHOD /path *WEIGHT"``) as an ``Operation``.

    Raises:
        OperationError: not of that form.
    """
    parts = text.split()
    if parts and parts[-1].startswith("*") and len(parts) == 3:
        try:
            weight = int(parts[-1][1:])
        except ValueError:
            raise OperationError(f"request {text!r}: weight must be *N, e.g. *3") from None
        parts = parts[:2]
    if len(parts) == 1 and parts[0].startswith("/"):
        parts = ["GET", parts[0]]
    if len(parts) != 2:
        raise OperationError(f"request {text!r}: expected 'METHOD /path', e.g. 'POST /buy'")
    method, path = parts[0].upper(), parts[1]
    if name is None:
        stem = path.split("?")[0].strip("/").replace("/", ".") or "root"
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:64]
        if not re.match(r"[A-Za-z_]", name):
            name = "op_" + name[:60]
    return Operation(name=name, method=method, path=path, headers=tuple(headers), body=body,
                     weight=weight, value=value or ValueSpec("text", ""))


def read_value(spec: ValueSpec, body: bytes) -> tuple[int | None, Any]:
    """The integer value of an answer body, and the decoded JSON (or None).

    Returns:
        ``(value, data)``: ``value`` is None for ``ValueSpec('none')``; ``data``
        is the decoded JSON document when the body was read as JSON.

    Raises:
        ValueError: the body holds no integer where the spec looks, with the reason.
    """
    if spec.kind == "none":
        return None, None
    if spec.kind == "json":
        try:
            data = _decode_json(body)
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"not a JSON body: {_snippet(body)}") from None
        node: Any = data
        for key in spec.arg.split("."):
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(
                key
            ) < len(node):
                node = node[int(key)]
            else:
                raise ValueError(f"no {spec.arg!r} in the JSON body: {_snippet(body)}")
        if type(node) is not int:
            raise ValueError(f"{spec.arg} is not an integer: {_snippet(repr(node).encode())}")
        return node, data
    text = body.decode("utf-8", "replace")
    if spec.kind == "regex":
        match = re.search(spec.arg, text)
        if match is None or match.group(1) is None:
            raise ValueError(f"pattern {spec.arg!r} not found in: {_snippet(body)}")
        text = match.group(1)
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d{1,4000}", text):
        raise ValueError(f"not an integer: {_snippet(text.encode())}")
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"integer out of the 64-bit range: {_snippet(text.encode())}")
    return value, None


def schedule(operations: Sequence[Operation], seed: int) -> list[int]:
    """Indexes into ``operations`` in proportion to their weights, shuffled by ``seed``.

    A swarm user cycles through this list: its mix is exact over every cycle,
    the same for the same seed, and costs one list index per call.
    """
    weights = [op.weight for op in operations]
    unit = math.gcd(*weights)
    order = [index for index, weight in enumerate(weights) for _ in range(weight // unit)]
    random.Random(seed).shuffle(order)
    return order


def operations_to_json(operations: Sequence[Operation]) -> str:
    """The operations as one JSON text (for the environment of a Locust process)."""
    return json.dumps([op.to_dict() for op in operations], separators=(",", ":"))


def operations_from_json(text: str) -> tuple[Operation, ...]:
    """Inverse of ``operations_to_json``.

    Raises:
        OperationError: not a JSON list of operations, or an empty one.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise OperationError("operations: not JSON") from None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise OperationError("operations: expected a non-empty JSON list of objects")
    return tuple(Operation.from_dict(d) for d in data)


_JSON = json.JSONDecoder()


def _decode_json(body: bytes) -> Any:
    """``json.loads(body)``, a third cheaper for the usual UTF-8 object.

    Raises:
        ValueError: the body is not one JSON document.
    """
    if not body.startswith(b"{"):
        return json.loads(body)
    text = body.decode("utf-8")
    data, end = _JSON.raw_decode(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):  # JSON's whitespace
        raise ValueError(f"extra data after the JSON document at {end}")
    return data


def _snippet(body: bytes) -> str:
    text = body[:60].decode("utf-8", "replace").replace("\n", " ").replace("\r", " ")
    return text + ("..." if len(body) > 60 else "")
