"""HTTP/1.x response framing without I/O: bytes in, whole responses out.

A swarm connection (``loadtests._connection``) reads from its socket and feeds
what arrives to a ``ResponseFramer``; the framer says when a whole response is
there, what it is, and whether the connection can carry the next request. No
socket, no clock, no Locust: the framing is tested with byte strings alone.

The parsing itself is llhttp's (Node.js's HTTP parser, through ``httptools``):
in ``bench/bench_swarm.py --framing`` it frames the demo's answer three to
five times faster than the hand-written framing it replaced. This module adds
what a load generator needs around it:

- interim ``1xx`` answers (``100 Continue``, ``103 Early Hints``) before the
  real one are skipped and listed in ``Response.interim``; ``101 Switching
  Protocols`` is final (the connection then carries another protocol);
- answers to ``HEAD`` carry no body whatever their headers say (``expect``);
- a body that ends when the server closes the connection (neither
  ``Content-Length`` nor chunked) is completed by ``feed_eof``;
- keep-alive as HTTP/1.x defines it (1.1 keeps unless ``Connection: close``,
  1.0 closes unless ``Connection: keep-alive``);
- Content-Length, chunked bodies (chunk extensions ignored, trailer fields
  read and dropped) are llhttp's; a response with both is refused (the
  ambiguity request smuggling uses).

Framing bytes are bounded as well as the body: the head by ``max_head``, and
the chunk size lines, extensions and trailer by ``max_head`` plus 64 bytes a
chunk, so that an answer whose framing never ends is refused.

Bodies larger than ``max_body`` (``MAX_BODY``, 1 MiB, by default) raise
``TooLarge`` as soon as the size is known, without buffering the rest; the
connection cannot be reused after that. A connection that ends before a whole
response raises ``Truncated``; bytes that are not an HTTP response raise
``BadResponse``. All three are ``FramingError``.
"""

from __future__ import annotations

import httptools

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "BadResponse",
    "FramingError",
    "Headers",
    "Response",
    "ResponseFramer",
    "TooLarge",
    "Truncated",
    "header_value",
]

MAX_BODY = 1 << 20  #: default body size limit, bytes
MAX_HEAD = 65536  #: status line and header fields of one response, bytes
_CHUNK_OVERHEAD = 64  # bytes of framing allowed per chunk (size line, extensions, CRLFs)

#: header fields as sent: (name, value) pairs
Headers = list[tuple[bytes, bytes]]


class FramingError(Exception):
    """What arrived is not a usable HTTP response."""


class BadResponse(FramingError):
    """The bytes are not an HTTP/1.x response (or break its framing rules)."""


class Truncated(FramingError):
    """The connection ended before a whole response arrived."""


class TooLarge(FramingError):
    """The body is larger than the framer's limit.

    Args:
        limit: the limit in bytes.
        status: the status of the response whose body it was.
    """

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit
        self.status = status


class _HeadOnly(Exception):
    """Raised inside llhttp's callback: this answer ends with its head (HEAD, 101)."""


class Response:
    """One whole response.

    Attributes:
        status: the status code.
        headers: the header fields as sent, (name, value) pairs.
        body: the body (de-chunked).
        keep_alive: the connection may carry another request.
        interim: statuses of the ``1xx`` answers skipped before this one.
    """

    __slots__ = ("body", "headers", "interim", "keep_alive", "sets_cookie", "status")

    def __init__(self, status: int, headers: Headers, body: bytes, keep_alive: bool,
                 interim: tuple[int, ...] = (), sets_cookie: bool = False) -> None:
        self.status = status
        self.headers = headers
        self.sets_cookie = sets_cookie
        self.body = body
        self.keep_alive = keep_alive
        self.interim = interim

    def header(self, name: str) -> str | None:
        """The value of the first header field ``name`` (any case), or None."""
        value = header_value(self.headers, name)
        return None if value is None else value.decode("latin-1")

    def __repr__(self) -> str:
        return (f"Response({self.status}, body={self.body[:40]!r}, "
                f"keep_alive={self.keep_alive}, interim={self.interim})")


def header_value(headers: Headers, name: str) -> bytes | None:
    """The value of the first header field ``name`` (any case), or None."""
    key = name.lower().encode("latin-1")
    size = len(key)
    for field, value in headers:
        if len(field) == size and field.lower() == key:
            return value.strip(b" \t")
    return None


class ResponseFramer:
    """Frames responses from the bytes of one connection, in order.

    Usage: ``expect(method)`` once per request sent (it matters for ``HEAD``),
    then ``feed(data)`` with every piece received until it returns a
    ``Response``; ``feed_eof()`` when the connection ends. Whole responses past
    the one returned stay queued for the next call (``buffered``).

    Args:
        max_body: largest body accepted, bytes.
        max_head: largest status line plus header fields accepted, bytes.
    """

    __slots__ = ("_chunks", "_cookie", "_fed", "_head_bytes", "_headers", "_headers_done",
                 "_interim", "_length", "_parser", "_parts", "_ready", "_size", "head_request",
                 "max_body", "max_head")

    def __init__(self, max_body: int = MAX_BODY, max_head: int = MAX_HEAD) -> None:
        self.max_body = max_body
        self.max_head = max_head
        self.head_request = False
        self.clear()

    @property
    def buffered(self) -> bool:
        """A whole response is waiting: ``feed(b"")`` returns it."""
        return bool(self._ready)

    def expect(self, method: str) -> None:
        """Say what the next request's method is (a ``HEAD`` answer has no body)."""
        self.head_request = method == "HEAD"
        self._head_bytes = b""

    def clear(self) -> None:
        """Forget everything (a new connection)."""
        self._parser = httptools.HttpResponseParser(self)
        self._ready: list[Response] = []
        self._interim: tuple[int, ...] = ()
        self._head_bytes = b""  # what a HEAD answer's bytes were (to find where it ends)
        self._message()

    def _message(self) -> None:
        self._headers_done = False
        self._headers: Headers = []
        self._parts: list[bytes] = []
        self._size = 0
        self._fed = 0  # bytes fed since the last whole response
        self._chunks = 0
        self._cookie = False
        self._length = b""

    def feed(self, data: bytes) -> Response | None:
        """Add received bytes; the next whole response, else None.

        Raises:
            BadResponse, TooLarge: see the module docstring.
        """
        if data:
            self._feed(data)
        ready = self._ready
        return ready.pop(0) if ready else None

    def _feed(self, data: bytes) -> None:
        self._fed += len(data)
        if self.head_request:
            self._head_bytes += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadOnly):
                self._head_only()
            elif isinstance(cause, FramingError):
                raise cause from None
            else:  # pragma: no cover - a bug in a callback here, not the answer's fault
                raise
        except httptools.HttpParserError as exc:
            raise BadResponse(str(exc) or type(exc).__name__) from None
        # Framing bytes (head, chunk sizes, trailer) are bounded, not only the body.
        if self._fed - self._size > self.max_head + _CHUNK_OVERHEAD * self._chunks:
            raise BadResponse("the answer's framing does not end" if self._headers_done
                              else "no end of headers")

    def feed_eof(self) -> Response:
        """The connection ended: the response it completes (or one still queued).

        Raises:
            Truncated: no whole response arrived before the end.
        """
        if self._ready:
            return self._ready.pop(0)
        if self._headers_done and self._until_close():
            self._complete(False)
            return self._ready.pop(0)
        if not self._fed and not self._interim:
            raise Truncated("connection closed before the response")
        raise Truncated("connection closed mid-response")

    def _until_close(self) -> bool:
        coding = header_value(self._headers, "transfer-encoding")
        if coding is not None:
            return not coding.lower().endswith(b"chunked")
        return header_value(self._headers, "content-length") is None

    # -- llhttp's callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        size = len(name)
        if size == 10 and name.lower() == b"set-cookie":
            self._cookie = True
        elif size == 14 and name.lower() == b"content-length":
            self._length = value

    def on_headers_complete(self) -> None:
        self._headers_done = True
        status = self._parser.get_status_code()
        if self._fed > self.max_head:
            size = sum(len(name) + len(value) + 4 for name, value in self._headers)
            if size > self.max_head:
                raise BadResponse(f"head larger than {self.max_head} bytes")
        if status == 101 or (self.head_request and status >= 200):
            raise _HeadOnly
        length = self._length
        if length and length.isdigit() and int(length) > self.max_body:
            raise TooLarge(self.max_body, status)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            raise TooLarge(self.max_body, self._parser.get_status_code())
        self._parts.append(body)

    def on_chunk_complete(self) -> None:
        self._chunks += 1

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim += (status,)
            self._message()
            return
        self._complete(self._parser.should_keep_alive())

    # -- whole responses ---------------------------------------------------------------

    def _complete(self, keep_alive: bool) -> None:
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._ready.append(Response(self._parser.get_status_code(), self._headers, body,
                                    keep_alive, self._interim, self._cookie))
        self._interim = ()
        self._message()

    def _head_only(self) -> None:
        """An answer that ends with its head: complete it, frame the bytes after afresh.

        After ``101 Switching Protocols`` the bytes belong to another protocol
        and the connection is not reused; after a HEAD answer they are the next
        response's.
        """
        upgraded = self._parser.get_status_code() == 101
        keep = not upgraded and self._parser.should_keep_alive()
        data, heads = self._head_bytes, len(self._interim) + 1
        end = -4
        for _ in range(heads):
            end = data.find(b"\r\n\r\n", end + 4)
        rest = b"" if upgraded else data[end + 4:]
        self._complete(keep)
        self.head_request = False
        self._head_bytes = b""
        self._parser = httptools.HttpResponseParser(self)
        if rest:
            self._feed(rest)
