"""uvicorn's HTTP/1.1 protocol, answering what it cannot parse as problem+json like every other error.

A request uvicorn's parser refuses (a Content-Length that is not a number or comes twice, both
Content-Length and Transfer-Encoding, a bad chunk, a header without a colon, raw bytes in the
URL) never reaches the application: uvicorn answers it itself, with a text/plain 400. This
protocol gives that same answer as `application/problem+json`, so that a client sees one error
format whatever went wrong. `erp api` and the tests' servers use it.
"""

from __future__ import annotations

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.problems import ProblemDetails

_BODY = msgspec.json.encode(
    ProblemDetails(
        400,
        "Bad Request",
        "the request is not valid HTTP/1.1: its request line, a header, or the framing of its body "
        "(Content-Length, Transfer-Encoding, chunks) could not be read",
    )
)


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request it cannot parse is answered 400 as problem+json."""

    def send_400_response(self, msg: str) -> None:
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(_BODY)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                _BODY,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
