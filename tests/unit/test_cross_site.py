"""The cross-site rule: a state-changing request a browser marks must come from the service's own
origin with the job browser's header and a JSON body; what no browser sent goes on unchanged."""
from __future__ import annotations

import pytest

from chalicelib.api.cross_site import CLIENT_HEADER, refusal
from chalicelib.config import Settings

HOST = {"Host": "api.example.com", "X-Forwarded-Proto": "https"}
OWN = "https://api.example.com"
UI = {CLIENT_HEADER: "ui", "Content-Type": "application/json"}


def settings(**extra: str) -> Settings:
    return Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e", jobs_queue_url="q",
                    **extra)


def refused_field(method: str, **headers: str) -> str | None:
    found = refusal(method, {**HOST, **headers}, settings())
    return None if found is None else found.field


def test_requests_without_browser_markers_go_on_unchanged():
    """curl, the command line and the original's clients: any content type, no custom header."""
    assert refused_field("POST", **{"Content-Type": "application/x-www-form-urlencoded"}) is None
    assert refused_field("PUT") is None
    assert refused_field("DELETE") is None


def test_reads_are_never_refused_by_this_rule():
    assert refused_field("GET", Origin="https://evil.example", **{"Sec-Fetch-Site": "cross-site"}) is None
    assert refused_field("HEAD", Origin="null") is None


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://api.example.com"},  # another scheme is another origin
    {"Origin": "https://api.example.com:8443"},  # and another port
    {"Origin": "https://api.example.com.evil.example"},
], ids=["foreign", "opaque", "scheme", "port", "suffix"])
def test_a_foreign_origin_is_refused_even_with_the_header_and_json(headers):
    assert refused_field("POST", **UI, **headers) == "Origin"


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_request_the_browser_marks_as_from_another_site_is_refused(site):
    assert refused_field("POST", **UI, **{"Sec-Fetch-Site": site}) == "Sec-Fetch-Site"


def test_the_own_origin_needs_the_client_header():
    assert refused_field("POST", Origin=OWN, **{"Content-Type": "application/json"}) == CLIENT_HEADER
    assert refused_field("POST", **{"Sec-Fetch-Mode": "cors", "Content-Type": "application/json"}) == CLIENT_HEADER


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
def test_the_own_origin_needs_a_json_body(content_type):
    assert refused_field("POST", Origin=OWN, **{CLIENT_HEADER: "ui", "Content-Type": content_type}) == "Content-Type"


def test_the_job_browsers_own_actions_go_on():
    assert refused_field("POST", Origin=OWN, **{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, **UI) is None
    assert refused_field("POST", Origin="https://API.example.com:443", **{CLIENT_HEADER: "ui",
                         "Content-Type": "application/json; charset=utf-8"}) is None


def test_the_edges_scheme_and_the_default_host_decide_the_own_origin():
    local = {"Host": "127.0.0.1:10000", "Origin": "http://127.0.0.1:10000", **UI}
    assert refusal("POST", local, settings()) is None
    aws = {"Host": "abc.execute-api.us-east-1.amazonaws.com", "Origin": "https://abc.execute-api.us-east-1.amazonaws.com",
           **UI}
    assert refusal("POST", aws, settings()) is None


def test_the_public_base_url_is_an_own_origin_too():
    """A front end (a CDN, a proxy) that forwards another Host: its address is configured."""
    headers = {**HOST, "Origin": "https://jobs.example.org", **UI}
    assert refusal("POST", headers, settings()) is not None
    assert refusal("POST", headers, settings(public_base_url="https://jobs.example.org/fastlane")) is None


def test_the_refusal_says_why():
    found = refusal("POST", {**HOST, "Origin": "https://evil.example", **UI}, settings())
    assert found is not None and "https://evil.example" in found.message and "own pages" in found.message
