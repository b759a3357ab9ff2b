"""The HTTP protocol of ``python -m serving``: uvicorn's own, answering ``POST /v1/scores``
as soon as the request is in.

Why: a CRM asks for one customer at a time, and the server is idle between requests. At that
pace most of a successful ``/v1/scores`` request's time in uvicorn is the ASGI machinery, not
the look-up: a request-response object, an asyncio task, the ASGI messages, the middleware
layers, two writes. Measured on the 2-core machine at 200 requests/s (p50), uvicorn with an
ASGI app that returns a constant took about 0.20 ms, and the same constant returned from the
protocol's parser callbacks about 0.11 ms, next to 0.09 ms for a bare socket server (see
README, "Serving"). This protocol asks :class:`serving.routes.scores.ScoresAnswerer`, the one
that also serves the ASGI fast path, directly from the parser's callbacks and writes the
answer with a single write.

Everything else goes through uvicorn's ASGI path unchanged: every other route, every error
(the answerer returns ``None`` and the request, body included, is handed to the app as
uvicorn would have built it), and every request this layer is not sure it may answer. It
answers only when all of these hold: ``POST``, the target exactly ``/v1/scores`` (no query
string), HTTP/1.1 with keep-alive, ``Content-Type: application/json`` exactly, an API-key
header, a ``Content-Length`` within the body limit (no chunked body, no ``Expect:
100-continue``, no upgrade), no earlier request on the connection still being answered
(pipelined answers keep their order) and no shutdown under way. Its answers are logged and
counted like the app's (access log with the route template, Prometheus metrics).

It subclasses ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`` and uses its
parser callbacks and per-request attributes, which are uvicorn internals: the dependency is
kept below uvicorn 1.0, and ``tests/serving/test_http_protocol.py`` runs this protocol in a
real uvicorn server, checking which layer answered and that the bytes are the route's.
"""

from __future__ import annotations

import asyncio
import time

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.access_log import log_request
from serving.routes.scores import JSON, KEY_HEADER, PATH, ScoresAnswerer, response_headers

_TARGET = PATH.encode()


class ScoresProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``POST /v1/scores`` answered by ``answerer``.

    Use :func:`scores_protocol` to get the class for one app's answerer.
    """

    answerer: ScoresAnswerer
    answered = 0  # requests this protocol answered itself, per class (one class per app)

    # Per request: the body of a request this protocol is reading (``None``: uvicorn's), the
    # API key it came with, when its headers were complete, and whether a shutdown began.
    _body: bytearray | None = None
    _key = b""
    _started = 0.0
    _closing = False

    def on_headers_complete(self) -> None:
        key = self._takes()
        if key is None:
            self._body = None
            super().on_headers_complete()
            return
        self._key = key
        self._body = bytearray()
        self._started = time.perf_counter()

    def _takes(self) -> bytes | None:
        """The request's API key when this protocol may answer the request, else ``None``."""
        parser = self.parser
        if (
            self.url != _TARGET
            or parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or self.expect_100_continue
            or self.limit_concurrency is not None
            or self._closing
            or (self.cycle is not None and not self.cycle.response_complete)
        ):
            return None
        content_type = key = length = None
        for name, value in self.headers:
            if name == b"content-type":
                content_type = value if content_type is None else content_type
            elif name == KEY_HEADER:
                key = value if key is None else key
            elif name == b"content-length":
                if length is not None:
                    return None
                length = value
            elif name == b"transfer-encoding":
                return None
        settings = self.answerer.state.settings
        if (
            content_type != JSON
            or key is None
            or length is None
            or not length.isdigit()
            or int(length) > settings.max_body_bytes
        ):
            return None
        return key

    def on_body(self, body: bytes) -> None:
        if self._body is None:
            super().on_body(body)
        else:
            self._body += body

    def on_message_complete(self) -> None:
        body = self._body
        if body is None:
            super().on_message_complete()
            return
        self._body = None
        try:
            answer = None if self._closing else self.answerer.answer(self._key, bytes(body))
        except Exception:  # the route meets the same error and answers it (a JSON 500)
            answer = None
        if answer is None:
            self._hand_to_app(body)
            return
        content = [STATUS_LINE[200]]
        for name, value in [*self.server_state.default_headers, *response_headers(answer)]:
            content += [name, b": ", value, b"\r\n"]
        content += [b"\r\n", answer]
        self.transport.write(b"".join(content))
        type(self).answered += 1
        self.on_response_complete()  # uvicorn's bookkeeping: count, keep-alive timer
        seconds = time.perf_counter() - self._started
        log_request("POST", PATH, 200, seconds)
        self.answerer.state.metrics.observe("POST", PATH, 200, seconds)

    def _hand_to_app(self, body: bytearray) -> None:
        """Start the ASGI app on the request just read, as uvicorn would have, body whole."""
        super().on_headers_complete()
        cycle = self.cycle
        cycle.body = body
        cycle.more_body = False
        if self._closing:
            cycle.keep_alive = False
        cycle.message_event.set()

    def shutdown(self) -> None:
        if self._body is None:
            super().shutdown()
        else:  # a request is half read: let it finish through the app, then close
            self._closing = True


def scores_protocol(answerer: ScoresAnswerer) -> type[asyncio.Protocol]:
    """A :class:`ScoresProtocol` class bound to ``answerer`` (uvicorn's ``http`` setting)."""
    return type("ScoresProtocol", (ScoresProtocol,), {"answerer": answerer, "answered": 0})
