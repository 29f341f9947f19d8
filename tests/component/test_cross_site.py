"""The app's cross-site rule in front of every route: a browser's action from another site is
refused with 403 and creates nothing, whatever credentials it carries; the job browser's own
actions and clients that are not browsers work as before."""
from __future__ import annotations

import base64

from chalicelib.api.cross_site import CLIENT_HEADER

JOB = {"image": "ubuntu", "command": "true"}
OWN = "http://fastlane.test"  # the Api fixture's Host
UI = {CLIENT_HEADER: "ui", "content-type": "application/json"}


def test_a_cross_site_post_is_refused_naming_why_and_leaves_nothing(api):
    for headers, field in (({"origin": "https://evil.example", **UI}, "Origin"),
                           ({"sec-fetch-site": "cross-site", **UI}, "Sec-Fetch-Site"),
                           ({"origin": "null", "content-type": "text/plain"}, "Origin")):
        refused = api.post("/tasks/csrf", JOB, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.json["operation"] == "cross_site" and refused.json["field"] == field
    assert api.get("/tasks/csrf").status_code == 404


def test_a_same_origin_browser_action_needs_the_client_header_and_json(api):
    created = api.post("/tasks/csrf-own", {**JOB, "startIn": "1h"}).json  # curl-like: no browser markers
    job = f"/tasks/csrf-own/jobs/{created['jobId']}"
    without_header = api.post(f"{job}/pause", {}, headers={"origin": OWN, "sec-fetch-site": "same-origin"})
    assert without_header.status_code == 403 and without_header.json["field"] == CLIENT_HEADER
    as_form = api.post(f"{job}/pause", "a=1", headers={"origin": OWN, CLIENT_HEADER: "ui",
                                                         "content-type": "application/x-www-form-urlencoded"})
    assert as_form.status_code == 403 and as_form.json["field"] == "Content-Type"
    assert api.get(job).json["job"]["schedule"]["paused"] is False
    paused = api.post(f"{job}/pause", {}, headers={"origin": OWN, "sec-fetch-site": "same-origin", **UI})
    assert paused.status_code == 200 and api.get(job).json["job"]["schedule"]["paused"] is True


def test_clients_that_are_not_browsers_keep_working_with_any_content_type(api):
    posted = api.post("/tasks/csrf-curl", JOB, headers={"content-type": "application/x-www-form-urlencoded"})
    assert posted.status_code == 200


def test_a_cross_site_request_is_refused_before_basic_auth_even_with_credentials(api, monkeypatch):
    from chalicelib import wiring

    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.reset()
    credentials = {"authorization": "Basic " + base64.b64encode(b"ana:s3cret").decode()}
    refused = api.post("/tasks/csrf-basic", JOB, headers={"origin": "https://evil.example", **UI, **credentials})
    assert refused.status_code == 403 and refused.json["operation"] == "cross_site"
    own = api.post("/tasks/csrf-basic", JOB, headers={"origin": OWN, **UI, **credentials})
    assert own.status_code == 200
