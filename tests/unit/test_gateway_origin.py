"""The local runtime's front door answers its own origin only: foreign Host names and requests
a browser marks as cross-site are refused before the app sees them."""
from __future__ import annotations

import pytest

from infra.local.gateway import OriginPolicy

POLICY = OriginPolicy("127.0.0.1", 10000, extra="devbox.lan")


@pytest.mark.parametrize("headers", [
    {"host": "127.0.0.1:10000"},
    {"host": "localhost:10000", "origin": "http://localhost:10000", "sec-fetch-site": "same-origin"},
    {"host": "[::1]:10000", "sec-fetch-site": "none"},
    {"host": "devbox.lan:10000", "origin": "http://devbox.lan:10000"},
])
def test_own_requests_pass(headers):
    assert POLICY.refusal(headers) is None


@pytest.mark.parametrize("headers,why", [
    ({"host": "evil.example:10000"}, "Host"),  # DNS rebinding: the browser names the attacker's host
    ({}, "Host"),
    ({"host": "127.0.0.1:10000", "origin": "http://evil.example"}, "Origin"),
    ({"host": "127.0.0.1:10000", "origin": "null"}, "Origin"),
    ({"host": "127.0.0.1:10000", "origin": "http://localhost:3000"}, "Origin"),  # another local site
    ({"host": "127.0.0.1:10000", "origin": "https://127.0.0.1:10000"}, "Origin"),
    ({"host": "127.0.0.1:10000", "sec-fetch-site": "cross-site"}, "Sec-Fetch-Site"),
    ({"host": "127.0.0.1:10000", "sec-fetch-site": "same-site"}, "Sec-Fetch-Site"),
])
def test_foreign_and_cross_site_requests_are_refused(headers, why):
    assert why in (POLICY.refusal(headers) or "")


def test_allowed_hosts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", "jobs.internal, other.lan")
    policy = OriginPolicy("0.0.0.0", 8080)
    assert policy.refusal({"host": "jobs.internal:8080"}) is None
    assert policy.refusal({"host": "0.0.0.0:8080"}) is not None


# the websocket: its own origin (websocket-client's default) and the runtime's pages --------------

SOCKET_PORT = 10001


@pytest.mark.parametrize("origin", [
    None,  # not a browser
    "http://127.0.0.1:10000",  # a stream page
    "http://127.0.0.1:10001",  # websocket-client's default: the websocket URL's own origin
    "https://127.0.0.1:10001",  # the same for a wss:// URL
    "http://localhost:10001",
    "http://devbox.lan:10001",
])
def test_a_websocket_lets_in_the_runtimes_pages_and_its_own_origin(origin):
    headers = {"host": "127.0.0.1:10001", **({"origin": origin} if origin else {})}
    assert POLICY.websocket_refusal(headers, SOCKET_PORT) is None


@pytest.mark.parametrize("origin", [
    "http://evil.example:10001",  # a foreign page on the websocket's port number
    "http://127.0.0.1:10002",
    "https://127.0.0.1:10000",  # the HTTP port is plain http only
    "ws://127.0.0.1:10001",
    "http://127.0.0.1",
    "null",
])
def test_a_websocket_refuses_every_other_origin(origin):
    refusal = POLICY.websocket_refusal({"host": "127.0.0.1:10001", "origin": origin}, SOCKET_PORT)
    assert refusal is not None and "Origin" in refusal
