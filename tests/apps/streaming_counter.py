"""The racy counter again, answering with a streamed (chunked) body."""

import time

count = 0


def app(environ, start_response):
    global count
    value = count
    time.sleep(0)
    count = value + 1
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield str(value + 1)[:1].encode()
        yield str(value + 1)[1:].encode()

    return body()
