"""`/docs` served by the service itself: Swagger UI's files from a pinned package, no CDN.

FastAPI's default page loads Swagger UI from a CDN without an integrity check, and an operator
pastes an API key into that page (issue 18). Here the assets come from `swagger-ui-bundle-v2`
(Swagger UI 5.31.0, pinned in pyproject.toml; 5.x renders the OpenAPI 3.1 FastAPI writes),
mounted under /docs/assets; ReDoc, which FastAPI also loads from a CDN, is not served. The
page and its assets, like /openapi.json, need no key: they hold no data.
"""

from __future__ import annotations

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_docs", "DOCS_PATH", "ASSETS_PATH"]

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve /docs from local assets (the app is built with docs_url=None, redoc_url=None)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # Swagger UI would otherwise send the document to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )
