"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served from assets vendored in the package.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which leaves ``/docs`` blank on a
machine without internet. Here every script, style sheet and icon comes from
``serving/static`` (versions, licenses and sha256 in ``serving/static/vendor/VENDORED.md``),
mounted at :data:`STATIC_PATH`. The Swagger page starts Swagger UI from a file
(``static/docs/swagger-init.js``) rather than an inline script, and both pages carry a
Content-Security-Policy allowing this server only (ReDoc's styles are inline and its search
runs in a ``blob:`` worker, which the policy allows).
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Where :data:`STATIC_DIR` is served.
STATIC_PATH = "/docs/static"
SWAGGER_UI = f"{STATIC_PATH}/vendor/swagger-ui-dist-5.35.0"
REDOC = f"{STATIC_PATH}/vendor/redoc-2.5.4"
DOCS_PATH, REDOC_PATH = "/docs", "/redoc"
#: The docs pages' policy: scripts, styles, images and API calls from this server only.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""


def swagger_ui_html(*, openapi_url: str, title: str) -> HTMLResponse:
    """The Swagger UI page for the schema at ``openapi_url``, with the vendored assets."""
    body = _SWAGGER_PAGE.format(
        title=html.escape(title),
        assets=SWAGGER_UI,
        openapi_url=html.escape(openapi_url, quote=True),
        init=f"{STATIC_PATH}/docs/swagger-init.js",
    )
    return HTMLResponse(body, headers=HEADERS)


def redoc_html(*, openapi_url: str, title: str) -> HTMLResponse:
    """The ReDoc page for the schema at ``openapi_url``, with the vendored script and no
    Google fonts."""
    page = get_redoc_html(
        openapi_url=openapi_url,
        title=title,
        redoc_js_url=f"{REDOC}/redoc.standalone.js",
        redoc_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        with_google_fonts=False,
    )
    return HTMLResponse(bytes(page.body), headers=HEADERS)


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets on ``app`` (made with ``docs_url=None,
    redoc_url=None``, so FastAPI's CDN pages are not there)."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="docs-static")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI")

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc")
