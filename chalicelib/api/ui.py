"""The job browser (GET /ui, docs/ui.md): one HTML page, one script and one style sheet, static
files in chalicelib/ui that call the HTTP API from the browser. They are read on first use and
kept for the container's life, so the routes that do not serve them never pay for them."""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

from chalice.app import Request, Response

from ..config import get_settings
from .http import operation, script_json, websocket_origin

FILES = Path(__file__).resolve().parent.parent / "ui"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
HTML = "text/html; charset=utf-8"


@functools.cache
def _file(name: str) -> str:
    return (FILES / name).read_text(encoding="utf-8")


@functools.cache
def _etag(name: str) -> str:
    return '"' + hashlib.sha256(_file(name).encode()).hexdigest()[:20] + '"'


def policy(websocket_url: str) -> str:
    """Only the deployment's own script, style and API, and the live logs' websocket."""
    connect = " ".join(part for part in ("'self'", websocket_origin(websocket_url)) if part)
    return ("default-src 'none'; script-src 'self'; style-src 'self'; "
            f"connect-src {connect}; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


Headers = dict[str, str | list[str]]


def _headers(content_type: str, websocket_url: str, cache: str) -> Headers:
    return {"Content-Type": content_type, "Content-Security-Policy": policy(websocket_url),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": cache}


def render(websocket_url: str, api_key: bool, version: str, trailing_slash: bool) -> str:
    """The page. Its assets are named relative to it: whatever prefix the browser sees (an API
    Gateway stage, a custom domain's base path, the signing proxy's none) stays theirs; `/ui/`
    resolves them one level deeper than `/ui` does."""
    config = {"websocketUrl": websocket_url, "apiKey": api_key, "version": version}
    return (_file("index.html")
            .replace("{{assets}}", "" if trailing_slash else "ui/")
            .replace("{{config}}", script_json(config)))


@operation("get_ui")
def page(request: Request, api_auth: str) -> Response:
    """The page. `api_auth` is how API Gateway authorizes the API (app.py): with API keys the page
    asks for one, since the browser cannot send it when it opens the page."""
    settings = get_settings()
    path = str((request.context or {}).get("path") or "")
    body = render(settings.websocket_url, api_auth == "api_key", settings.version, path.endswith("/"))
    return Response(body=body, status_code=200, headers=_headers(HTML, settings.websocket_url, "no-store"))


def asset(name: str) -> Callable[[Request], Response]:
    """The route body serving one of the page's two files, with an ETag, revalidated each time
    (no build step names them by their content)."""

    @operation(f"get_ui_{name.replace('.', '_')}")
    def view(request: Request) -> Response:
        settings = get_settings()
        etag = _etag(name)
        headers: Headers = {**_headers(ASSETS[name], settings.websocket_url, "no-cache"), "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(body="", status_code=304, headers=headers)
        return Response(body=_file(name), status_code=200, headers=headers)

    return view
