"""/docs loads nothing from outside the service (issue 18): Swagger UI from a pinned package."""

from __future__ import annotations

import re

from tests.service.app_client import running_app

KEY = "0123456789abcdef0123456789abcdef"


def test_docs_load_only_the_services_own_assets(sqlite_url: str) -> None:
    with running_app(sqlite_url, api_keys=KEY) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sorted(assets) == ["/docs/assets/favicon-32x32.png", "/docs/assets/swagger-ui-bundle.js",
                                  "/docs/assets/swagger-ui.css"]
        for asset in assets:  # served without a key: they hold no data
            assert client.get(asset).status_code == 200, asset
        assert "://" not in page.text  # no CDN, no validator badge, no fonts
        assert '"validatorUrl": null' in page.text and "'/openapi.json'" in page.text
        assert client.get("/redoc").status_code == 404  # ReDoc's page would load its bundle from a CDN
        assert "/docs" not in client.get("/openapi.json").json()["paths"]
