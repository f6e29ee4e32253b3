"""The interactive API reference at /api/docs: Swagger UI over the generated OpenAPI document,
served through Envoy's REST port from the installed swagger-ui-bundle-v2 wheel, nothing from a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import yaml

from tests.support.stack import TallyProcess


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("src") if tag == "script" else values.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def test_api_docs_page_and_its_assets_load(tally: TallyProcess) -> None:
    with httpx.Client(base_url=tally.rest_url, timeout=10) as client:
        for path in ("/api/docs", "/api/docs/"):
            page = client.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
        parser = _Assets()
        parser.feed(page.text)
        # The page loads Swagger UI's script and style and its own initializer, all from Tally itself.
        assert {"/api/docs/swagger-ui-bundle.js", "/api/docs/swagger-ui.css", "/api/docs/api-docs.js"} <= set(
            parser.urls
        )
        assert all(url.startswith("/") and not url.startswith("//") for url in parser.urls), parser.urls
        types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        for url in parser.urls:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].startswith(types[url[url.rindex(".") :]]), url
            assert len(asset.content) > 0
        bundle = client.get("/api/docs/swagger-ui-bundle.js").text
        assert "SwaggerUIBundle" in bundle and len(bundle) > 500_000
        # The initializer points Swagger UI at the document Envoy serves, which is OpenAPI 3.1
        # (Swagger UI 5 renders 3.1; the older 4.x bundle would refuse it).
        initializer = client.get("/api/docs/api-docs.js").text
        spec_url = re.search(r'url:\s*"([^"]+)"', initializer)
        assert spec_url is not None
        document = yaml.safe_load(client.get(spec_url.group(1)).text)
        assert document["openapi"].startswith("3.1")
        assert document["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
        assert "5.31.0" in bundle  # the pinned wheel's Swagger UI release
