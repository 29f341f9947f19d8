"""Idempotency keys: the header's syntax, what a key is scoped to, what "the same body" means,
which answers are kept and for how long (docs/decisions.md#idempotency-keys)."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import Conflict, ValidationError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # on a replayed answer only, as Stripe sends it

KEEP_SECONDS = 24 * 3600  # API.md: within 24 hours the same key returns the first answer
# How long a key's first request may hold it before another request with the key takes over: the
# API function's timeout (.chalice/config.json `lambda_timeout`; tests/infra checks it is not
# longer). Past it the first request cannot still be running (Lambda ended it), so it died.
LEASE_SECONDS = 60.0
RETRY_AFTER_SECONDS = 1  # what a request that finds its key in progress is told to wait

MAX_KEY_LENGTH = 255
# Visible ASCII: no spaces (HTTP strips them at the ends, so " k" and "k" would be one key to some
# proxies and two to others), no control characters, nothing that depends on a header's encoding.
_KEY = re.compile(f"[!-~]{{1,{MAX_KEY_LENGTH}}}")
KEY_RULE = (f"The {HEADER} header must be 1 to {MAX_KEY_LENGTH} visible ASCII characters "
            "('!' to '~': letters, digits and punctuation, no spaces); a UUID is a good key.")


def validate_key(raw: str) -> str:
    if not _KEY.fullmatch(raw):
        raise ValidationError(KEY_RULE, field=HEADER)
    return raw


def scoped_key(method: str, path: str, key: str) -> str:
    """A key names one request of one route on one resource: the same key on another job, or on
    another method, is another key. Unambiguous, since the key itself holds no space."""
    return f"{method.upper()} {path} {key}"


def body_fingerprint(body: dict[str, Any] | None) -> str:
    """What "the same body" means: the parsed JSON, with keys sorted and no insignificant spaces,
    hashed. Key order and formatting do not matter; values do (`1` and `1.0` are two bodies, as
    they are two JSON texts). None: a route that reads no body (retry), whatever was sent."""
    canonical = "" if body is None else json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                    ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


NO_BODY = body_fingerprint(None)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as it is kept for replay: its status code, body and content type."""

    status: int
    body: str
    content_type: str = "application/json"

    @property
    def kept(self) -> bool:
        """Only successes are kept. An error (4xx, 5xx) frees the key: nothing was created, so the
        client may correct the request, or wait for a dependency, and send it with the same key."""
        return 200 <= self.status < 300

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "contentType": self.content_type}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        return cls(status=int(data["status"]), body=str(data["body"]), content_type=str(data["contentType"]))


class KeyReused(Conflict):
    """The key was used with another body within KEEP_SECONDS (409)."""


class KeyInProgress(Conflict):
    """The key's first request has not answered yet (409, with when to try again)."""

    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
