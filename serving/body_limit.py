"""Request bodies: a cap on size, a time limit, and a memory budget shared by all requests.

- Size: a body over ``max_bytes`` is answered with the API's JSON error (413
  ``payload_too_large``). A declared ``Content-Length`` over the cap is refused before any byte
  is read; a body sent without one (chunked) is counted as it arrives and refused as soon as
  it passes the cap. FastAPI's own ``max_body_size`` is not used because it answers a
  declared oversize body in plain text, outside the API's error format.
- Time: the whole body must arrive within ``timeout`` seconds of the request reaching the
  app; a client that stops half way gets 408 ``request_timeout`` and the connection is closed.
- Memory: the bodies of all requests being read at once may hold at most ``budget`` bytes
  (:class:`BodyBudget`). A declared body that does not fit is refused at once with 503
  ``overloaded`` and ``Retry-After``; a chunked one when the chunk that does not fit arrives.
  Together with the admission slots (:mod:`serving.admission`) this bounds the memory that
  big uploads can take (docs/http-api.md, "Limits").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import HTTP_ERROR_CODES, ApiError, error_body

CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised while reading a body that passes the cap; rendered by the 413 error handler."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyBudget:
    """Bytes of request bodies held by requests in flight, against a ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; ``False`` (nothing reserved) when they do not fit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give_back(self, size: int) -> None:
        """Return ``size`` reserved bytes."""
        self.used -= size


def _over_budget() -> ApiError:
    return ApiError(
        503,
        "overloaded",
        "the server holds as many request bodies as it may; retry later",
        headers={"Retry-After": "1", **CLOSE},
    )


class BodyLimitMiddleware:
    """Refuse request bodies larger than ``max_bytes`` (JSON 413), slower than ``timeout``
    seconds (JSON 408) or not fitting the shared ``budget`` (JSON 503)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        timeout: float | None = None,
        budget: BodyBudget | None = None,
        reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.budget = budget
        # Counts a refusal by reason (``body_timeout``, ``body_memory``) in the metrics.
        self.reject = reject or (lambda reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        size = int(declared) if declared is not None and declared.isdigit() else None
        if size is not None and size > self.max_bytes:
            code, message = HTTP_ERROR_CODES[413]
            await JSONResponse(error_body(code, message), status_code=413)(scope, receive, send)
            return
        budget = self.budget
        reserved = 0
        if budget is not None and size:
            if not budget.take(size):
                self.reject("body_memory")
                err = _over_budget()
                await JSONResponse(
                    error_body(err.code, err.message), status_code=503, headers=err.headers
                )(scope, receive, send)
                return
            reserved = size
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        received = 0
        done = False

        async def receive_capped() -> Message:
            nonlocal received, reserved, done
            if done or deadline is None:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    self.reject("body_timeout")
                    raise HTTPException(408, headers=CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise BodyTooLarge()
                if budget is not None and received > reserved:  # chunked: reserve as it comes
                    if not budget.take(received - reserved):
                        self.reject("body_memory")
                        raise _over_budget()
                    reserved = received
            return message

        try:
            await self.app(scope, receive_capped, send)
        finally:
            if budget is not None and reserved:
                budget.give_back(reserved)
