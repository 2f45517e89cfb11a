"""HTTP response framing from byte strings alone (loadtests.framing: no sockets)."""

from __future__ import annotations

import pytest

from loadtests.framing import (
    MAX_BODY,
    BadResponse,
    Response,
    ResponseFramer,
    TooLarge,
    Truncated,
    header_value,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"value\":1}"


def frame_all(data: bytes, pieces: int = 1, method: str = "GET",
              eof: bool = False, **kw: int) -> tuple[Response, ResponseFramer]:
    """Feed ``data`` in ``pieces`` roughly equal slices; the first response."""
    framer = ResponseFramer(**kw)
    framer.expect(method)
    step = max(1, len(data) // pieces)
    response = None
    for start in range(0, len(data), step):
        response = framer.feed(data[start:start + step])
        if response is not None:
            break
    if response is None and eof:
        response = framer.feed_eof()
    assert response is not None
    return response, framer


@pytest.mark.parametrize("pieces", [1, 2, 7, len(OK)])
def test_content_length_in_any_pieces(pieces: int) -> None:
    """A Content-Length body is framed however the bytes arrive, byte by byte included."""
    response, _ = frame_all(OK, pieces)
    assert (response.status, response.body, response.keep_alive) == (200, b'{"value":1}', True)
    assert response.header("content-type") == "application/json"
    assert response.header("X-Missing") is None


def test_one_answer_per_request_and_the_next_after_expect() -> None:
    """expect() starts the next exchange; bytes past a whole answer make it not reusable."""
    framer = ResponseFramer()
    framer.expect("GET")
    assert framer.feed(OK[:20]) is None
    first = framer.feed(OK[20:])
    assert first is not None and first.body == b'{"value":1}' and first.keep_alive
    framer.expect("GET")
    second = framer.feed(OK)
    assert second is not None and second.keep_alive
    framer.expect("GET")
    doubled = framer.feed(OK + OK[:30])
    assert doubled is not None and doubled.body == b'{"value":1}'
    assert doubled.keep_alive is False  # a second answer to one request: out of step
    assert framer.feed(OK[30:]) is None
    assert framer.feed_eof() is doubled
    framer.expect("GET")
    twice = framer.feed(OK + OK)
    assert twice is not None and twice.keep_alive is False


def test_connection_close_and_http10() -> None:
    """Connection: close ends keep-alive; HTTP/1.0 closes unless it says keep-alive."""
    close = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    assert frame_all(close)[0].keep_alive is False
    http10 = OK.replace(b"HTTP/1.1", b"HTTP/1.0")
    assert frame_all(http10)[0].keep_alive is False
    kept = http10.replace(b"Content-Length", b"Connection: Keep-Alive\r\nContent-Length")
    assert frame_all(kept)[0].keep_alive is True
    upgrade = OK.replace(b"Content-Length", b"Connection: upgrade\r\nContent-Length")
    assert frame_all(upgrade)[0].keep_alive is True


def test_read_until_close() -> None:
    """Neither Content-Length nor chunked: the body ends with the connection."""
    data = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n42\nand more"
    framer = ResponseFramer()
    assert framer.feed(data) is None
    assert framer.feed(b" bytes") is None
    response = framer.feed_eof()
    assert (response.status, response.body, response.keep_alive) == (
        200, b"42\nand more bytes", False)


def test_chunked_with_extensions_and_trailers() -> None:
    """Chunk extensions are ignored, trailer fields dropped, in any pieces."""
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;name=value\r\n{\"va\r\nB\r\nlue\": 1234}\r\n0;last\r\nX-Trailer: yes\r\n"
            b"Another: one\r\n\r\n")
    for pieces in (1, 3, len(data)):
        response, _ = frame_all(data, pieces)
        assert (response.body, response.keep_alive) == (b'{"value": 1234}', True), pieces
        assert response.header("transfer-encoding") == "chunked"


def test_chunked_and_content_length_together_are_refused() -> None:
    """Both headers: the framing is ambiguous (request smuggling's trick), so refused."""
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nhi\r\n0\r\n\r\n")
    with pytest.raises(BadResponse):
        ResponseFramer().feed(data)


def test_other_transfer_coding_reads_until_close() -> None:
    """A transfer coding that does not end in chunked: until close (RFC 9112 6.3)."""
    framer = ResponseFramer()
    assert framer.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz") is None
    assert framer.feed_eof().body == b"xyz"


def test_interim_100_continue_before_the_answer() -> None:
    """1xx answers are skipped and listed; the real one follows."""
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
    for pieces in (1, 5, len(data)):
        response, _ = frame_all(data, pieces)
        assert (response.status, response.interim, response.body) == (
            200, (100, 103), b'{"value":1}')


def test_no_body_answers() -> None:
    """HEAD, 204, 304 and 101 carry no body whatever their headers say."""
    head_only = OK[:OK.index(b"\r\n\r\n") + 4]
    for pieces in (1, 4):
        head, _ = frame_all(head_only, pieces, method="HEAD")
        assert (head.status, head.body, head.keep_alive) == (200, b"", True)
    extra, _ = frame_all(head_only + b"garbage", method="HEAD")
    assert (extra.body, extra.keep_alive) == (b"", False)
    for status in (b"204 No Content", b"304 Not Modified"):
        response, _ = frame_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 5\r\n\r\n")
        assert response.body == b"" and response.keep_alive
    switching, _ = frame_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
    assert (switching.status, switching.keep_alive) == (101, False)


@pytest.mark.parametrize("data, message", [
    (b"", "connection closed before the response"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "connection closed mid-response"),
    (OK[:-3], "connection closed mid-response"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
     "connection closed mid-response"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n",
     "connection closed mid-response"),
    (b"HTTP/1.1 100 Continue\r\n\r\n", "connection closed mid-response"),
])
def test_truncated_answers(data: bytes, message: str) -> None:
    """A connection that ends before a whole response raises Truncated, saying where."""
    framer = ResponseFramer()
    assert framer.feed(data) is None
    with pytest.raises(Truncated, match=message):
        framer.feed_eof()


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000,
])
def test_garbage_is_a_bad_response(data: bytes) -> None:
    """Bytes that break HTTP/1.x framing raise BadResponse."""
    with pytest.raises(BadResponse):
        ResponseFramer().feed(data)


def test_endless_head_and_trailer_are_bad() -> None:
    """A head or a trailer that never ends is refused past the head limit."""
    with pytest.raises(BadResponse, match="no end of headers"):
        ResponseFramer(max_head=100).feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 40)
    with pytest.raises(BadResponse, match="head larger than 100 bytes"):
        ResponseFramer(max_head=100).feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 40 + b"\r\n")
    framer = ResponseFramer(max_head=100)
    with pytest.raises(BadResponse, match="framing does not end"):
        framer.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X" * 200)


def test_oversized_answers() -> None:
    """Past the body limit the answer is refused as soon as its size is known."""
    assert MAX_BODY == 1 << 20
    with pytest.raises(TooLarge, match="answer larger than 10 bytes") as caught:
        ResponseFramer(max_body=10).feed(OK.replace(b"11", b"5000"))
    assert caught.value.status == 200
    chunked = ResponseFramer(max_body=10)
    assert chunked.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n") \
        is None
    with pytest.raises(TooLarge):
        chunked.feed(b"8\r\n123")
    until_close = ResponseFramer(max_body=10)
    assert until_close.feed(b"HTTP/1.1 200 OK\r\n\r\n12345") is None
    with pytest.raises(TooLarge):
        until_close.feed(b"1234567890")
    with pytest.raises(TooLarge):
        ResponseFramer(max_body=10).feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 11)
    exact = ResponseFramer(max_body=11)
    assert exact.feed(OK) is not None


def test_long_chunked_body_is_not_rescanned() -> None:
    """A body of many chunks: their framing bytes are allowed as it grows."""
    framer = ResponseFramer()
    assert framer.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") is None
    for _ in range(3000):
        assert framer.feed(b"3\r\nabc\r\n") is None
    response = framer.feed(b"0\r\n\r\n")
    assert response is not None and response.body == b"abc" * 3000


def test_clear_forgets_a_half_response() -> None:
    """A new connection starts framing afresh."""
    framer = ResponseFramer()
    assert framer.feed(OK[:30]) is None
    framer.clear()
    assert framer.feed(OK) is not None


def test_header_value_any_case_and_repr() -> None:
    """Header lookup ignores case and surrounding blanks; the repr names the status."""
    head = b"HTTP/1.1 302 Found\r\nLOCATION:  /login \r\nnot a field\r\nX-Racelab-Pid: 7"
    assert header_value(head, "Location") == b"/login"
    assert header_value(head, "x-racelab-pid") == b"7"
    assert header_value(head, "set-cookie") is None
    response = Response(302, head, b"", True)
    assert response.headers == [(b"LOCATION", b"/login"), (b"X-Racelab-Pid", b"7")]
    assert "Response(302" in repr(response)


def test_cookies_are_flagged() -> None:
    """Set-Cookie is flagged for the client's jar, and readable from the head."""
    with_cookie = OK.replace(b"Content-Type", b"Set-Cookie: s=1; Path=/\r\nContent-Type")
    response, _ = frame_all(with_cookie)
    assert response.sets_cookie and response.header("set-cookie") == "s=1; Path=/"
    assert not frame_all(OK)[0].sets_cookie
