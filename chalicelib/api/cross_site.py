"""Actions a browser sends must come from this deployment's own pages (the job browser at /ui).

A web page on another site can make the user's browser send a POST with the user's cookies or
cached Basic credentials, as a form or a "simple" fetch: no preflight, but only with a form's
content types and without custom headers. So a state-changing request that a browser marks (it
carries `Origin`, `Sec-Fetch-Site` or `Sec-Fetch-Mode`) must come from this deployment's own
origin and carry a JSON Content-Type and the `X-Fastlane-Client` header, which only a page of the
same origin can add. Requests without those markers (curl, the command line, the original
fastlane's clients, server-to-server calls) are not browsers' and go on unchanged. The local
runtime's gateway also refuses every cross-site request before the app sees it; this rule is the
app's own, so it holds in AWS too (docs/ui.md#cross-site-requests)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalice.app import Request, Response

from ..config import Settings, get_settings
from ..observability import logger
from .http import error_response

CLIENT_HEADER = "X-Fastlane-Client"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BROWSER_MARKERS = ("origin", "sec-fetch-site", "sec-fetch-mode")
# Sec-Fetch-Site of a request made by a page of this origin, or by the user (an address typed).
OWN_SITE = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and the header that says so."""

    message: str
    field: str


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, lower-case, with the scheme's default port."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return scheme, parts.hostname.lower(), port


def _own_origins(headers: Mapping[str, str], settings: Settings) -> set[tuple[str, str, int]]:
    """The origins this request may come from: the one its Host names, with the scheme the edge
    reports (as the API's own URLs are built), and the configured public base URL's."""
    own: set[tuple[str, str, int]] = set()
    host = headers.get("host")
    if host:
        scheme = headers.get("x-forwarded-proto") or ("https" if host.lower().endswith("amazonaws.com") else "http")
        found = _origin_of(f"{scheme.split(',')[0].strip()}://{host}")
        if found:
            own.add(found)
    if settings.public_base_url:
        found = _origin_of(settings.public_base_url)
        if found:
            own.add(found)
    return own


def _json_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def refusal(method: str, headers: Mapping[str, str], settings: Settings) -> Refusal | None:
    """Why a request may not act, or None. `headers` as Chalice gives them (any case)."""
    if method.upper() not in STATE_CHANGING:
        return None
    lowered = {str(name).lower(): str(value) for name, value in headers.items()}
    if not any(marker in lowered for marker in BROWSER_MARKERS):
        return None  # not a browser: curl, the command line, another service
    site = lowered.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in OWN_SITE:
        return Refusal(f"Cross-site request refused (Sec-Fetch-Site: {site[:40]}): actions are taken from this "
                       "service's own pages only.", "Sec-Fetch-Site")
    origin = lowered.get("origin")
    if origin is not None and _origin_of(origin) not in _own_origins(lowered, settings):
        return Refusal(f"Cross-origin request refused (Origin: {origin[:100]}): actions are taken from this "
                       "service's own pages only.", "Origin")
    if not lowered.get(CLIENT_HEADER.lower(), "").strip():
        return Refusal(f"A browser's action must carry the {CLIENT_HEADER} header, as the job browser sends it; "
                       "a page of another site cannot add it.", CLIENT_HEADER)
    if not _json_type(lowered.get("content-type")):
        return Refusal("A browser's action must send a JSON body with Content-Type: application/json, as the job "
                       "browser does; forms of other sites cannot.", "Content-Type")
    return None


def guard(request: Request) -> Response | None:
    """The 403 that refuses a browser's action from elsewhere, or None when it may go on."""
    found = refusal(request.method, request.headers or {}, get_settings())
    if found is None:
        return None
    logger.warning("cross-site request refused", extra={"field": found.field})
    return error_response(403, found.message, "cross_site", found.field)
