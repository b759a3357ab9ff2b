"""A cap on request body size, answered with the API's JSON error (413 ``payload_too_large``).

Starlette reads bodies of any size by default. A declared ``Content-Length`` over the cap is
refused before any byte is read; a body sent without one (chunked) is counted as it arrives
and refused as soon as it passes the cap. FastAPI's own ``max_body_size`` is not used because
it answers a declared oversize body in plain text, outside the API's error format.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import HTTP_ERROR_CODES, error_body


class BodyTooLarge(HTTPException):
    """Raised while reading a body that passes the cap; rendered by the 413 error handler."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` with a JSON 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            code, message = HTTP_ERROR_CODES[413]
            await JSONResponse(error_body(code, message), status_code=413)(scope, receive, send)
            return
        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, receive_capped, send)
