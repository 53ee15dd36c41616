"""/docs: the API's Swagger UI, served from the package's own copy of swagger-ui-dist.

FastAPI's built-in page loads Swagger UI from a CDN (blank offline) and starts it with an inline
script; this page loads both from the hub itself, so it works without network and under the
same Content-Security-Policy as the rest of the hub (no inline script, no other origin).
"""

from __future__ import annotations

import html

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from .. import __version__
from .auth import Policy, declare, public
from .ui.assets import SWAGGER_FILES, SWAGGER_MISSING_HINT, files

STATIC = "/docs/static"
CACHE = {"Cache-Control": "public, max-age=86400"}  # URLs carry ?v=<gpufleet version>
# Our start-up script (the one thing FastAPI's page inlines): a file, so CSP needs no 'unsafe-inline'.
INIT_JS = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout", showExtensions: true, showCommonExtensions: true});
});
"""


def _page(title: str) -> str:
    v = html.escape(__version__)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="stylesheet" href="{STATIC}/swagger-ui.css?v={v}">
<link rel="icon" type="image/png" href="{STATIC}/favicon-32x32.png?v={v}">
</head><body><div id="swagger-ui"></div>
<script src="{STATIC}/swagger-ui-bundle.js?v={v}"></script>
<script src="{STATIC}/init.js?v={v}"></script>
</body></html>
"""


def mount(app: FastAPI) -> None:
    """Add /docs and its files; create the app with docs_url=None so FastAPI's own page is off."""
    found = files(SWAGGER_FILES)  # looked up once: the package does not change under a running hub
    page = _page(f"{app.title} {__version__}: API")

    @app.get("/docs", include_in_schema=False, dependencies=[public()])
    async def docs() -> Response:
        if found is None:
            return HTMLResponse(f"<!doctype html><title>API docs</title><p>{html.escape(SWAGGER_MISSING_HINT)}</p>",
                                status_code=503)
        return HTMLResponse(page)

    @app.get(STATIC + "/{name}", include_in_schema=False, dependencies=[public()])
    async def docs_static(name: str) -> Response:
        if name == "init.js":
            return Response(INIT_JS, media_type="text/javascript", headers=CACHE)
        if found is None or name not in found:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(found[name], headers=CACHE)

    declare(app, "/openapi.json", Policy.PUBLIC)
