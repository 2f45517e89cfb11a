"""A plain WSGI app answering with a streamed body of three chunks."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"1"
        yield b"2"
        yield b"3"

    return body()
