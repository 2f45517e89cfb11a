"""HTTP/1.x response framing without I/O: bytes in, whole responses out.

A swarm connection (``loadtests._connection``) reads from its socket and feeds
what arrives to a ``ResponseFramer``; the framer says when a whole response is
there, what it is, and whether the connection can carry the next request. No
socket, no clock, no Locust: the framing is tested with byte strings alone.

The parsing itself is llhttp's (Node.js's HTTP parser, through ``httptools``):
llhttp calls back only at the end of the head, for the body and at the end of
the message; the head itself is kept as the bytes that were received, and
split into fields only when asked (``Response.headers``). This module adds
what a load generator needs around llhttp:

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

One request, one answer: bytes that arrive after a whole answer, before the
next request is sent, answer nothing (a server out of step with its client,
or a connection that must not be reused), so the connection is marked not
reusable (``keep_alive`` False) and those bytes are dropped.

Framing bytes are bounded as well as the body: the head by ``max_head``, and
the chunk size lines, extensions and trailer by ``max_head`` plus 64 bytes a
chunk, so that an answer whose framing never ends is refused.

Bodies larger than ``max_body`` (``MAX_BODY``, 1 MiB, by default) raise
``TooLarge`` as soon as more than that has arrived, without buffering the
rest; the connection cannot be reused after that. A connection that ends before a whole
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
_CRLF2 = b"\r\n\r\n"


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
        head: status line and header fields as received, CRLF-separated,
            without the blank line that ends them.
        body: the body (de-chunked).
        keep_alive: the connection may carry another request.
        interim: statuses of the ``1xx`` answers skipped before this one.
        sets_cookie: the head has a ``Set-Cookie`` field.
    """

    __slots__ = ("body", "head", "interim", "keep_alive", "sets_cookie", "status")

    def __init__(self, status: int, head: bytes, body: bytes, keep_alive: bool,
                 interim: tuple[int, ...] = (), sets_cookie: bool = False) -> None:
        self.status = status
        self.head = head
        self.body = body
        self.keep_alive = keep_alive
        self.interim = interim
        self.sets_cookie = sets_cookie

    @property
    def headers(self) -> Headers:
        """The header fields as sent, (name, value) pairs, values stripped."""
        return header_fields(self.head)

    def header(self, name: str) -> str | None:
        """The value of the first header field ``name`` (any case), or None."""
        value = header_value(self.head, name)
        return None if value is None else value.decode("latin-1")

    def __repr__(self) -> str:
        return (f"Response({self.status}, body={self.body[:40]!r}, "
                f"keep_alive={self.keep_alive}, interim={self.interim})")


def header_fields(head: bytes) -> Headers:
    """The (name, value) pairs of a head (status line first, CRLF-separated)."""
    fields = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            fields.append((name.strip(b" \t"), value.strip(b" \t")))
    return fields


def header_value(head: bytes, name: str) -> bytes | None:
    """The value of the first header field ``name`` (any case) in ``head``, or None."""
    key = b"\r\n" + name.lower().encode("latin-1") + b":"
    lowered = head.lower()
    pos = lowered.find(key)
    if pos < 0:
        return None
    start = pos + len(key)
    stop = lowered.find(b"\r\n", start)
    return head[start:stop if stop >= 0 else len(head)].strip(b" \t")


class ResponseFramer:
    """Frames the answer to each request of one connection.

    Usage: ``expect(method)`` before each request is sent (it resets the
    framer for the next answer, and a ``HEAD`` answer has no body), then
    ``feed(data)`` with every piece received until it returns a ``Response``;
    ``feed_eof()`` when the connection ends first.

    Args:
        max_body: largest body accepted, bytes.
        max_head: largest status line plus header fields accepted, bytes.
    """

    __slots__ = (
        "_chunks",
        "_extra",
        "_fed",
        "_head",
        "_head_end",
        "_headers_done",
        "_interim",
        "_keep",
        "_parser",
        "_parts",
        "_raw",
        "_response",
        "_size",
        "head_request",
        "max_body",
        "max_head",
    )

    def __init__(self, max_body: int = MAX_BODY, max_head: int = MAX_HEAD) -> None:
        self.max_body = max_body
        self.max_head = max_head
        self.clear()

    def clear(self) -> None:
        """Forget everything (a new connection)."""
        self._parser = httptools.HttpResponseParser(self)
        self.head_request = False
        self._exchange()

    def _exchange(self) -> None:
        self._response: Response | None = None
        self._extra = False  # bytes came after the whole answer
        self._interim: tuple[int, ...] = ()
        self._raw = b""  # bytes of this exchange up to the end of the final head
        self._fed = 0  # bytes fed in this exchange
        self._message()

    def _message(self) -> None:
        self._headers_done = False
        self._head = b""
        self._head_end = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._chunks = 0

    def expect(self, method: str) -> None:
        """A request is about to be sent: frame its answer (a ``HEAD`` one has no body)."""
        # What _exchange() does, inline: this runs once per request.
        self.head_request = method == "HEAD"
        self._response = None
        self._extra = False
        self._interim = ()
        self._raw = b""
        self._fed = self._size = self._chunks = 0
        self._headers_done = False
        self._parts = []

    def feed(self, data: bytes) -> Response | None:
        """Add received bytes; the answer once it is whole, else None.

        Raises:
            BadResponse, TooLarge: see the module docstring.
        """
        if self._response is not None:  # already answered: nothing more belongs here
            self._extra = True
            self._response.keep_alive = False
            return None
        if not self._headers_done:
            self._raw = self._raw + data if self._raw else data
        self._fed += len(data)
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
        response = self._response
        if response is None:
            # Framing bytes (head, chunk sizes, trailer) are bounded, not only the body.
            if self._fed - self._size > self.max_head + _CHUNK_OVERHEAD * self._chunks:
                raise BadResponse("the answer's framing does not end" if self._headers_done
                                  else "no end of headers")
            return None
        if self._extra:  # a second message began in the same bytes
            response.keep_alive = False
            self._parser = httptools.HttpResponseParser(self)
        return response

    def feed_eof(self) -> Response:
        """The connection ended: the answer it completes.

        Raises:
            Truncated: no whole answer arrived before the end.
        """
        if self._response is not None:
            return self._response
        if self._headers_done and self._until_close():
            self._complete(False)
            assert self._response is not None
            return self._response
        if not self._fed:
            raise Truncated("connection closed before the response")
        raise Truncated("connection closed mid-response")

    def _until_close(self) -> bool:
        coding = header_value(self._head, "transfer-encoding")
        if coding is not None:
            return not coding.lower().endswith(b"chunked")
        return header_value(self._head, "content-length") is None

    # -- llhttp's callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._response is not None:
            self._extra = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        raw = self._raw
        start, end = 0, raw.find(_CRLF2)
        for _ in self._interim:  # the interim answers' heads come first
            start, end = end + 4, raw.find(_CRLF2, end + 4)
        if end < 0:  # pragma: no cover - llhttp accepts only CRLF line ends
            end = len(raw)
        if end - start > self.max_head:
            raise BadResponse(f"head larger than {self.max_head} bytes")
        self._head = raw[start:end]
        self._head_end = end
        status = self._parser.get_status_code()
        if status == 101 or (self.head_request and status >= 200):
            raise _HeadOnly
        if 100 <= status < 200:
            self._headers_done = False  # the final answer's head is still to come

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            raise TooLarge(self.max_body, self._parser.get_status_code())
        self._parts.append(body)

    def on_chunk_complete(self) -> None:
        self._chunks += 1

    def on_message_complete(self) -> None:
        if self._response is not None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim += (status,)
            self._message()
            return
        self._complete(self._parser.should_keep_alive())

    # -- whole answers -----------------------------------------------------------------

    def _complete(self, keep_alive: bool) -> None:
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        head = self._head
        self._response = Response(self._parser.get_status_code(), head, body, keep_alive,
                                  self._interim, b"\r\nset-cookie:" in head.lower())

    def _head_only(self) -> None:
        """An answer that ends with its head (HEAD, 101): complete it there.

        llhttp would wait for a body; a fresh parser takes the connection's
        next bytes. What came after the head in the same bytes answers nothing
        (after a 101 it is another protocol), so the connection is not reused.
        """
        upgraded = self._parser.get_status_code() == 101
        extra = self._head_end + 4 < len(self._raw)
        self._complete(not (upgraded or extra) and self._parser.should_keep_alive())
        self._parser = httptools.HttpResponseParser(self)
