"""What a webhook delivery is, without the network: the headers it carries, its timestamped
signature (and the receiver's check of it), and the result of one attempt. The sending itself
is the webhooks adapter's (chalicelib/adapters/webhooks.py)."""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Fastlane-Signature"
EVENT_HEADER = "X-Fastlane-Event"
DELIVERY_HEADER = "X-Fastlane-Delivery"
# Headers a hook may not set: they describe the request itself, or they are ours.
RESERVED_HEADERS = ("host", "content-type", "content-length", "transfer-encoding", "connection", "x-fastlane-")

# How old a signature a receiver should still accept, in seconds (what signature_matches checks).
SIGNATURE_TOLERANCE_SECONDS = 300
_SIGNATURE = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-f]{64})")


@dataclass(frozen=True)
class HookResult:
    """What one attempt got: a status code, or an error saying why there is none."""

    status_code: int | None = None
    error: str | None = None
    permanent: bool = False  # refused by policy or malformed: retrying cannot succeed
    address: str | None = None  # the address connected to

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header's value: `t=<epoch seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    The time is signed with the body, so a receiver can refuse a delivery replayed later."""
    at = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode("utf-8"), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def signature_matches(secret: str, body: bytes, header: str | None, *, now: float | None = None,
                      tolerance: float = SIGNATURE_TOLERANCE_SECONDS) -> bool:
    """What a receiver does: read the time, refuse one too far from its own clock, recompute the
    signature of the bytes it received, compare in constant time."""
    match = _SIGNATURE.fullmatch(header or "")
    if match is None:
        return False
    at = int(match.group(1))
    if abs((time.time() if now is None else now) - at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, at), header or "")


def _headers(hook_headers: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    own = {k: v for k, v in hook_headers.items() if not k.lower().startswith(RESERVED_HEADERS)}
    return {**own, **extra}


def request_headers(hook_headers: dict[str, str], *, event: str, delivery: str, body: bytes, secret: str,
                    user_agent: str, timestamp: int | None = None) -> dict[str, str]:
    """The hook's own headers, then ours (a hook cannot replace them)."""
    extra = {"Content-Type": "application/json", "User-Agent": user_agent, EVENT_HEADER: event,
             DELIVERY_HEADER: delivery}
    if secret:
        extra[SIGNATURE_HEADER] = sign(secret, body, timestamp)
    return _headers(hook_headers, extra)
