"""The local gateway sizes a request's body from its headers before reading a byte of it:
a length that is not one number of bytes is 400, one over MAX_BODY_BYTES 413, a body of unknown
length 411, no Content-Length an empty body, and a body that stops arriving 408."""
from __future__ import annotations

import http.client
import io
import json

import pytest

from infra.local.gateway import BodyRefused, declared_length

LIMIT = 1000


def headers(*lines: str) -> http.client.HTTPMessage:
    return http.client.parse_headers(io.BytesIO("".join(f"{line}\r\n" for line in (*lines, "")).encode()))


@pytest.mark.parametrize("lines,length", [
    ((), 0),  # no Content-Length and no Transfer-Encoding: HTTP/1.1 says the body is empty
    (("Content-Length: 0",), 0),
    (("Content-Length: 1000",), 1000),
    (("Content-Length: 0012",), 12),
    (("Content-Length: 12", "Content-Length: 12"), 12),  # repeated, the same: allowed by HTTP
    (("Content-Length: 12, 12",), 12),
])
def test_a_declared_length_within_the_limit_is_the_bodys_size(lines, length):
    assert declared_length(headers(*lines), LIMIT) == length


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "+5", "0x10", "", "5, 6", "١٢", "12 bytes"])
def test_a_length_that_is_not_one_number_of_bytes_is_400_naming_the_header(value):
    with pytest.raises(BodyRefused) as refused:
        declared_length(headers(f"Content-Length: {value}"), LIMIT)
    response = refused.value.response
    assert response["statusCode"] == 400 and response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert body["field"] == "Content-Length" and body["operation"] == "route"
    assert "Content-Length must be one number of bytes" in body["error"]


def test_two_different_lengths_are_400():
    with pytest.raises(BodyRefused) as refused:
        declared_length(headers("Content-Length: 5", "Content-Length: 6"), LIMIT)
    assert refused.value.response["statusCode"] == 400


@pytest.mark.parametrize("value", [str(LIMIT + 1), "9" * 5000])
def test_a_length_over_the_limit_is_413_naming_the_header_and_the_setting(value):
    with pytest.raises(BodyRefused) as refused:
        declared_length(headers(f"Content-Length: {value}"), LIMIT)
    response = refused.value.response
    body = json.loads(response["body"])
    assert response["statusCode"] == 413 and body["field"] == "body"
    assert "Content-Length" in body["error"] and f"at most {LIMIT}" in body["error"] and "MAX_BODY_BYTES" in body["error"]


@pytest.mark.parametrize("lines", [("Transfer-Encoding: chunked",), ("Transfer-Encoding: chunked", "Content-Length: 5")])
def test_a_body_of_unknown_length_is_411(lines):
    with pytest.raises(BodyRefused) as refused:
        declared_length(headers(*lines), LIMIT)
    body = json.loads(refused.value.response["body"])
    assert refused.value.response["statusCode"] == 411 and body["field"] == "Content-Length"


# over a socket: a body that never comes does not hold the server ---------------------------------


@pytest.fixture
def server():
    from chalice import Chalice

    from infra.local.gateway import LocalHttpServer

    app = Chalice(app_name="framing")

    @app.route("/echo", methods=["POST"])
    def echo() -> dict:
        return {"bytes": len(app.current_request.raw_body or b"")}

    local = LocalHttpServer(app, "127.0.0.1", 0)
    local.httpd.RequestHandlerClass.body_timeout = 0.5
    local.start()
    try:
        yield local
    finally:
        local.stop()


def answer(port: int, data: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        return response, response.read()


def test_a_body_that_stops_arriving_is_408_after_the_body_timeout(server):
    import time

    started = time.monotonic()
    response, body = answer(server.port, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
    assert response.status == 408 and json.loads(body)["field"] == "body"
    assert time.monotonic() - started < 5 and response.headers["Connection"] == "close"


def test_a_whole_body_within_the_limit_reaches_the_app(server):
    response, body = answer(server.port, b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}")
    assert response.status == 200 and json.loads(body) == {"bytes": 2}
