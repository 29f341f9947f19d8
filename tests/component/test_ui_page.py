"""The job browser's page and files as the app serves them: a strict policy on each, the page's
settings, Basic auth asking the browser, API keys not asked for the page itself, and nothing read
from disk by the routes that do not serve them."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from chalicelib.api import ui

ROOT = Path(__file__).resolve().parents[2]


def config_of(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="config">(.*?)</script>', html, re.S)
    assert found
    return json.loads(found.group(1))


def test_the_page_is_html_with_a_strict_policy_and_its_settings(api, monkeypatch):
    from chalicelib.config import get_settings

    monkeypatch.setenv("WEBSOCKET_URL", "wss://abc.execute-api.us-east-1.amazonaws.com/api")
    get_settings.cache_clear()
    try:
        page = api.get("/ui")
    finally:
        get_settings.cache_clear()
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self' wss://abc.execute-api.us-east-1.amazonaws.com; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Cache-Control"] == "no-store"
    html = page.body.decode()
    assert config_of(html)["websocketUrl"] == "wss://abc.execute-api.us-east-1.amazonaws.com/api"
    assert config_of(html)["apiKey"] is False
    assert 'src="ui/app.js"' in html and 'href="ui/app.css"' in html


def test_the_files_are_named_relative_to_the_page_with_or_without_its_slash(api):
    assert 'src="app.js"' in api.get("/ui/").body.decode()


def test_the_files_carry_the_policy_and_an_etag(api):
    script = api.get("/ui/app.js")
    assert script.status_code == 200 and script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "script-src 'self'" in script.headers["Content-Security-Policy"]
    assert api.get("/ui/app.js", headers={"if-none-match": script.headers["ETag"]}).status_code == 304
    style = api.get("/ui/app.css")
    assert style.status_code == 200 and style.headers["Content-Type"] == "text/css; charset=utf-8"
    assert style.headers["ETag"] != script.headers["ETag"]


def test_with_api_keys_the_page_asks_for_one():
    assert config_of(ui.render("", True, "1.0", False))["apiKey"] is True


def test_with_basic_auth_the_browser_is_asked_for_credentials(api, monkeypatch):
    from chalicelib import wiring

    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    wiring.reset()
    for path in ("/ui", "/ui/app.js", "/ui/app.css"):
        asked = api.get(path)
        assert asked.status_code == 401 and asked.headers["WWW-Authenticate"].startswith("Basic"), path
    credentials = {"authorization": "Basic " + base64.b64encode(b"ana:s3cret").decode()}
    assert api.get("/ui", headers=credentials).status_code == 200


def test_other_routes_never_read_the_files(api):
    ui._file.cache_clear()
    assert api.get("/tasks").status_code == 200 and api.get("/status").status_code == 200
    assert ui._file.cache_info().currsize == 0


def test_importing_the_app_reads_no_file_and_api_keys_are_not_asked_for_the_page_itself():
    """With API keys (FASTLANE_API_AUTH=api_key) API Gateway asks every route for one, but the
    browser cannot send it when it opens a page: the page and its files are served without."""
    script = ("from chalicelib.api import ui\nimport app\nassert ui._file.cache_info().currsize == 0\n"
              "routes = app.app.routes\n"
              "print(routes['/ui']['GET'].api_key_required, routes['/ui/app.js']['GET'].api_key_required, "
              "routes['/tasks']['GET'].api_key_required)")
    env = {**os.environ, "FASTLANE_API_AUTH": "api_key", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]
