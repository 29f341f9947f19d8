"""Redaction of what a job carries as it is shown anywhere: secret-looking envs, webhook headers and URLs."""
from __future__ import annotations

import re
from urllib.parse import urlsplit


def is_secret_name(name: str, patterns: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(p.lower() in lowered for p in patterns)


def redact_envs(envs: dict[str, str], patterns: tuple[str, ...]) -> dict[str, str]:
    """envs with the values of secret-looking names shown as ***."""
    return {k: ("***" if is_secret_name(k, patterns) else v) for k, v in envs.items()}


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """A webhook's headers as shown anywhere: every value is *** (they carry credentials)."""
    return {name: "***" for name in headers}


HIDDEN = "\u2026"  # …: what stands for the hidden part of a URL
_URL_IN_TEXT = re.compile(r"https?://[^\s()<>\"']+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """A webhook URL as shown anywhere but in its own request: many carry their credential in the
    path (Slack's /services/T…/B…/<secret>, Discord's /api/webhooks/<id>/<token>, one-segment
    /<uuid> receivers) or the query. Scheme, host and port are kept, and the first path segment
    when another follows it; the rest of the path, the query, the fragment and any user info are
    replaced by one `…`. docs/decisions.md#webhook-urls-are-shown-redacted."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a bracketed host that is not an address
        return HIDDEN
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.scheme and parts.netloc else ""
    segments = [segment for segment in parts.path.split("/") if segment]
    if not segments and not parts.query and not parts.fragment:
        return origin + ("/" if parts.path else "")
    first = f"/{segments[0]}" if len(segments) > 1 else ""
    return f"{origin}{first}/{HIDDEN}"


def redact_urls(text: str) -> str:
    """Text with every http(s) URL in it redacted (a receiver's Location, an error that quotes one)."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
