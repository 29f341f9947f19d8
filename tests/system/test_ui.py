"""The job browser (/ui) in a real browser (Debian's Chromium driven by Playwright) against the
local runtime: every page shows real jobs posted over HTTP, every action takes effect (checked
through the API), live output appears while a job runs, nothing is loaded from elsewhere, and
another site cannot act through the user's browser. Each page is photographed into
FASTLANE_UI_SCREENSHOTS (docs/ui.md shows them), or a temporary folder."""
from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import Runtime, running_runtime, wait_until

# One worker runs them all (make test runs pytest -n 2 --dist loadgroup): one runtime, one browser.
pytestmark = [pytest.mark.system, pytest.mark.xdist_group("ui")]

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
FINAL = {"done", "failed", "timedout", "expired", "stopped"}
SECRET = "s3cr3t-value-never-shown"
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    # Small pages, so that paging shows with a handful of tasks, and an output's page ends with
    # the first read of its events (10,000 of them, as CloudWatch answers).
    with running_runtime(tmp_path_factory.mktemp("ui"), {"PER_PAGE": "4", "LOG_PAGE_BYTES": "1024"}) as rt:
        yield rt


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("FASTLANE_UI_SCREENSHOTS") or tmp_path_factory.mktemp("ui-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Watched:
    """A tab, with what it loaded and what went wrong in it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.sockets: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append((r.method, r.url, r.headers)))
        page.on("websocket", lambda w: self.sockets.append(w.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda d: d.accept())

    def loaded_only_from(self, origin: str) -> None:
        elsewhere = [url for _, url, _ in self.requests if not url.startswith(origin + "/")]
        sockets = [url for url in self.sockets if not url.startswith("ws://127.0.0.1:")]
        assert not elsewhere and not sockets, (elsewhere, sockets)


def open_tab(browser: Browser, **options: Any) -> Watched:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    return Watched(context.new_page())


@pytest.fixture
def tab(browser: Browser, runtime: Runtime) -> Iterator[Watched]:
    watched = open_tab(browser)
    try:
        yield watched
        watched.loaded_only_from(runtime.url)
        # 4xx answers the page asked for and showed (a refused action) are logged by the browser too
        assert not [e for e in watched.errors if "status of 4" not in e], watched.errors
    finally:
        watched.page.context.close()


def shoot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def post(runtime: Runtime, task: str, **job: Any) -> dict[str, Any]:
    answer = runtime.post(f"/tasks/{task}", json={"image": "alpine", **job})
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


def final(runtime: Runtime, created: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    return runtime.wait_for_execution(created["executionUrl"], FINAL, timeout=timeout)


def job(runtime: Runtime, created: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = runtime.get(runtime.path(created["jobUrl"])).json()["job"]
    return found


def field(page: Page, name: str) -> Any:
    return page.locator(f".summary dt:text-is('{name}') + dd")


def ui(runtime: Runtime, route: str = "") -> str:
    return f"{runtime.url}/ui{'#' + route if route else ''}"


# the page and its files -------------------------------------------------------------------------


def test_the_page_and_its_two_files_come_with_a_strict_policy_and_name_nothing_elsewhere(runtime: Runtime) -> None:
    page = runtime.get("/ui")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                      "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"):
        assert directive in policy
    assert re.search(r"connect-src 'self' ws://127\.0\.0\.1:\d+;", policy)
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # relative to the page, whichever of /ui and /ui/ the browser opened
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == ["data:,", "ui/app.css", "ui/app.js", "#/", "#/tasks",
                                                                  "#/executions"]
    assert 'href="app.css"' in runtime.get("/ui/").text
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset = runtime.get(f"/ui/{name}")
        assert asset.status_code == 200 and asset.headers["Content-Type"].startswith(kind)
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        assert not re.search(r"https?://|url\(", asset.text), name
        again = runtime.get(f"/ui/{name}", headers={"If-None-Match": asset.headers["ETag"]})
        assert again.status_code == 304 and not again.content


# the first page: the farm, and two clicks to a failure --------------------------------------------


def test_the_first_page_leads_to_a_failures_exit_code_reason_and_last_lines(runtime: Runtime, tab: Watched,
                                                                            shots: Path) -> None:
    page = tab.page
    failed = post(runtime, "ui-first", command="sh -c 'echo starting; echo the disk is full >&2; exit 3'",
                  notify={"fails": ["ops@example.com"]})
    timed_out = post(runtime, "ui-first", command="sleep 30", timeout=1)
    scheduled = post(runtime, "ui-first", command="echo tick", cron="0 3 * * *")
    assert final(runtime, failed)["status"] == "failed"
    reason = final(runtime, timed_out)["reason"]
    assert reason

    page.goto(ui(runtime))  # the first page
    failures = page.locator('section[aria-label="Recent failures"]')
    link = failures.locator(f'a[href$="{failed["executionId"]}"]')
    expect(link).to_be_visible()
    expect(failures.locator("tr", has=page.locator(f'a[href$="{failed["executionId"]}"]'))).to_contain_text("3")
    farm = runtime.get("/status").json()
    counts = page.locator('section[aria-label="Executions by status"]')
    expect(counts.locator('a[href="#/executions?status=failed"] .n')).to_have_text(str(farm["executions"]["failed"]))
    expect(page.locator('section[aria-label="Pools"]')).to_contain_text("default")
    expect(page.locator('section[aria-label="Queues"]')).to_contain_text("jobsDeadLetter")
    expect(page.locator('section[aria-label="Scheduled jobs"]').locator(f'a[href$="{scheduled["jobId"]}"]')).to_be_visible()
    shoot(page, shots, "overview")

    link.click()  # one click: the failed execution, its exit code, reason and last lines
    expect(field(page, "Exit code")).to_have_text("3")
    expect(field(page, "Status")).to_have_text("failed")
    expect(page.locator('section[aria-label="Last lines"] pre[data-stream="stdout"]')).to_have_text("starting")
    expect(page.locator('section[aria-label="Last lines"] pre[data-stream="stderr"]')).to_contain_text("the disk is full")
    sent = page.locator('section[aria-label="Notifications sent"] tbody tr')
    expect(sent).to_have_count(1)
    expect(sent).to_contain_text("ops@example.com")

    page.go_back()
    page.locator('section[aria-label="Recent failures"]').locator(f'a[href$="{timed_out["executionId"]}"]').click()
    expect(field(page, "Status")).to_have_text("timedout")
    expect(field(page, "Reason")).to_have_text(reason)


def test_the_first_page_refreshes_by_itself(runtime: Runtime, tab: Watched) -> None:
    page = tab.page
    page.goto(ui(runtime))
    expect(page.locator(".updated")).to_contain_text("updated")
    later = post(runtime, "ui-refresh", command="sh -c 'exit 9'")
    final(runtime, later)
    row = page.locator('section[aria-label="Recent failures"] tr', has=page.locator(f'a[href$="{later["executionId"]}"]'))
    expect(row).to_contain_text("9")  # without reloading


# tasks, a task, a job --------------------------------------------------------------------------------


def test_tasks_are_listed_page_by_page_and_filtered_by_prefix(runtime: Runtime, tab: Watched, shots: Path) -> None:
    page = tab.page
    for n in range(5):
        post(runtime, f"ui-list-{n}", command="true")
    post(runtime, "ui-other", command="true")
    page.goto(ui(runtime, "/tasks?prefix=ui-list-"))
    rows = page.locator("main tbody tr")
    expect(rows).to_have_count(4)  # PER_PAGE
    expect(page.locator(".pager")).to_contain_text("page 1 of 2 (5 in all)")
    shoot(page, shots, "tasks")
    page.locator('.pager a[rel="next"]').click()
    expect(rows).to_have_count(1)
    assert all(text.startswith("ui-list-") for text in page.locator("main tbody tr td:first-child").all_inner_texts())
    page.fill("#prefix", "ui-oth")
    page.press("#prefix", "Enter")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("ui-other")


def test_a_tasks_jobs_show_their_latest_status_and_schedule(runtime: Runtime, tab: Watched, shots: Path) -> None:
    page = tab.page
    done = post(runtime, "ui-task", command="echo fine")
    failing = post(runtime, "ui-task", command="sh -c 'exit 5'")
    cron = post(runtime, "ui-task", command="echo tick", cron="30 4 * * *")
    final(runtime, done)
    final(runtime, failing)
    page.goto(ui(runtime, "/task/ui-task"))

    def row(created: dict[str, Any]) -> Any:
        return page.locator("main tbody tr", has=page.locator(f'a[href$="/{created["jobId"]}"]'))

    expect(row(done)).to_contain_text("done")
    expect(row(failing)).to_contain_text("failed")
    expect(row(failing).locator(".exit")).to_have_text("5")
    expect(row(cron)).to_contain_text("30 4 * * *")
    expect(row(cron)).to_contain_text("next")
    shoot(page, shots, "task")


def test_the_job_page_shows_the_spec_redacted_and_pauses_resumes_runs_now_and_stops(runtime: Runtime, tab: Watched,
                                                                                     shots: Path) -> None:
    page = tab.page
    created = post(runtime, "ui-job", command="sh -c 'echo run now; exit 0'", cron="15 2 * * *",
                   envs={"API_TOKEN": SECRET, "MODE": "fast"}, metadata={"team": "ops"})
    page.goto(ui(runtime, f"/job/ui-job/{created['jobId']}"))
    spec = page.locator('section[aria-label="Specification"]')
    expect(spec.locator("tr", has_text="API_TOKEN")).to_contain_text("***")
    expect(spec).to_contain_text('"team": "ops"')
    assert SECRET not in page.content()
    expect(page.locator("ol.runs li")).to_have_count(5)

    page.click('[data-action="pause"]')
    wait_until(lambda: job(runtime, created)["schedule"]["paused"], timeout=10, what="the job to be paused")
    expect(page.locator('section[aria-label="Schedule"]')).to_contain_text("paused")
    expect(page.locator('[data-action="resume"]')).to_be_enabled()
    page.click('[data-action="resume"]')
    wait_until(lambda: not job(runtime, created)["schedule"]["paused"], timeout=10, what="the job to be resumed")

    page.click('[data-action="run-now"]')
    wait_until(lambda: job(runtime, created)["executionCount"] == 1, timeout=10, what="run now to start an execution")
    ran = job(runtime, created)["executions"][0]
    assert job(runtime, created)["schedule"]["nextRuns"]  # the schedule unchanged
    runs = page.locator('section[aria-label="Executions"] tbody tr')
    expect(runs).to_have_count(1)
    expect(runs).to_contain_text("done")
    expect(page.locator(".notice")).to_contain_text(ran["executionId"])
    shoot(page, shots, "job")

    page.click('[data-action="stop"]')  # the confirmation is accepted
    wait_until(lambda: not job(runtime, created)["schedule"]["pending"], timeout=10, what="the job to be stopped")
    expect(page.locator('section[aria-label="Schedule"]')).to_contain_text("stopped: no more runs")


def test_retry_on_the_job_page_starts_a_new_execution(runtime: Runtime, tab: Watched) -> None:
    page = tab.page
    created = post(runtime, "ui-retry", command="sh -c 'exit 4'")
    final(runtime, created)
    page.goto(ui(runtime, f"/job/ui-retry/{created['jobId']}"))
    expect(page.locator('section[aria-label="Executions"] tbody tr')).to_have_count(1)
    page.click('[data-action="retry"]')
    wait_until(lambda: job(runtime, created)["executionCount"] == 2, timeout=10, what="the retry's execution")
    expect(page.locator('section[aria-label="Executions"] tbody tr')).to_have_count(2)


# an execution ----------------------------------------------------------------------------------------

COUNTING = "sh -c 'for i in 1 2 3 4 5 6; do echo line $i; sleep 1; done; echo bye >&2; exit 3'"


def test_the_execution_page_shows_the_output_live_then_the_end_timeline_and_full_output(runtime: Runtime, tab: Watched,
                                                                                        shots: Path) -> None:
    page = tab.page
    created = post(runtime, "ui-live", command=COUNTING)
    page.goto(ui(runtime, f"/execution/ui-live/{created['jobId']}/{created['executionId']}"))
    live = page.locator(".out.live")
    expect(live.locator(".line", has_text="line 1")).to_be_visible()
    # seen while it runs: the rest of the lines are still to come
    status = runtime.get(runtime.path(created["executionUrl"])).json()["execution"]["status"]
    assert status not in FINAL and "line 6" not in live.inner_text()
    expect(live.locator(".line", has_text="line 6")).to_be_visible()
    expect(live.locator('.line[data-stream="stderr"]')).to_have_text("bye")
    expect(page.locator(".live-exit [data-exit-code]")).to_have_text("3")
    expect(field(page, "Status")).to_have_text("failed")

    timeline = page.locator('section[aria-label="Timeline"] tbody tr')
    expect(timeline.last).to_contain_text("failed")
    statuses = [entry["status"] for entry in
                runtime.get(runtime.path(created["executionUrl"])).json()["execution"]["timeline"]]
    expect(timeline).to_have_count(len(statuses))
    assert statuses[0] == "accepted" and "running" in statuses
    expect(timeline.last).to_contain_text("exitCode")

    full = page.locator('section[aria-label="Full output"]')
    expect(full.locator('pre[data-stream="stdout"]')).to_have_text("".join(f"line {i}\n" for i in range(1, 7)))
    expect(full.locator('pre[data-stream="stderr"]')).to_have_text("bye\n")
    expect(page.locator('[data-action="more-stdout"]')).to_be_hidden()  # one page holds it all
    shoot(page, shots, "execution")


def test_the_full_output_is_read_page_by_page(runtime: Runtime, tab: Watched) -> None:
    """Past what a page may hold, the route pages its output."""
    page = tab.page
    created = post(runtime, "ui-pages", command="seq 1 12000")
    final(runtime, created)
    page.goto(ui(runtime, f"/execution/ui-pages/{created['jobId']}/{created['executionId']}"))
    stdout = page.locator('section[aria-label="Full output"] pre[data-stream="stdout"]')
    more = page.locator('[data-action="more-stdout"]')
    expect(more).to_be_visible()
    first = stdout.evaluate("e => e.textContent")
    assert first.startswith("1\n2\n") and not first.endswith("\n12000\n")
    more.click()
    expect(more).to_be_hidden()
    assert stdout.evaluate("e => e.textContent") == "".join(f"{i}\n" for i in range(1, 12001))
    expect(page.locator('section[aria-label="Full output"]')).to_contain_text("2 page(s)")


def test_stop_on_the_execution_page_stops_it(runtime: Runtime, tab: Watched) -> None:
    page = tab.page
    created = post(runtime, "ui-stop", command="sh -c 'echo waiting; sleep 60'")
    page.goto(ui(runtime, f"/execution/ui-stop/{created['jobId']}/{created['executionId']}"))
    expect(page.locator(".out.live .line", has_text="waiting")).to_be_visible()
    page.click('[data-action="stop"]')
    assert final(runtime, created, timeout=20)["status"] == "stopped"
    expect(field(page, "Status")).to_have_text("stopped")


# executions across tasks ---------------------------------------------------------------------------


def test_failed_executions_across_tasks_are_retried_in_bulk(runtime: Runtime, tab: Watched, shots: Path) -> None:
    page = tab.page
    failed = [post(runtime, task, command="sh -c 'echo bulk; exit 2'") for task in ("ui-bulk-a", "ui-bulk-b")]
    for created in failed:
        final(runtime, created)
    page.goto(ui(runtime, "/executions?status=failed&since=1h&task=ui-bulk-"))
    rows = page.locator("main tbody tr")
    expect(rows).to_have_count(2)
    page.check('thead input[type="checkbox"]')
    expect(page.locator('[data-action="bulk-retry"]')).to_have_text("Retry selected (2)")
    page.click('[data-action="bulk-retry"]')  # the confirmation is accepted
    expect(page.locator(".notice")).to_have_text("2 of 2 retried.")
    for created in failed:
        wait_until(lambda c=created: job(runtime, c)["executionCount"] == 2, timeout=10, what="the bulk retry")
        newest = job(runtime, created)["executions"][0]["executionId"]
        # in the "Retried" table, and in the list too once the retry has failed in its turn
        expect(page.locator(f'a[href$="{newest}"]').first).to_be_visible()
    shoot(page, shots, "executions")


# another site ----------------------------------------------------------------------------------------


def test_another_site_cannot_act_through_the_browser(runtime: Runtime, tab: Watched) -> None:
    page = tab.page
    foreign = requests.post(f"{runtime.url}/tasks/ui-guard", json={"image": "alpine", "command": "true"},
                            headers={"Origin": "https://evil.example"}, timeout=10)
    assert foreign.status_code == 403

    page.goto(ui(runtime, "/tasks"))
    expect(page.locator("h1")).to_have_text("Tasks")
    fetched = page.evaluate("""async () => {
      const job = JSON.stringify({image: "alpine", command: "true"});
      const send = (headers) => fetch("/tasks/ui-guard", {method: "POST", headers, body: job})
        .then(async (r) => [r.status, (await r.json()).field || null]);
      return [await send({"Content-Type": "application/json"}),
              await send({"Content-Type": "text/plain", "X-Fastlane-Client": "ui"}),
              await send({"Content-Type": "application/json", "X-Fastlane-Client": "ui"})];
    }""")
    assert fetched[:2] == [[403, "X-Fastlane-Client"], [403, "Content-Type"]]
    assert fetched[2][0] == 200  # as the page itself sends its actions
    assert runtime.get("/tasks/ui-guard").json()["total"] == 1  # one job: the refused ones left nothing

    # a form on another page (its origin opaque), posting to the runtime
    other = page.context.new_page()
    other.set_content(f"""<form method="post" enctype="text/plain" action="{runtime.url}/tasks/ui-guard-form">
      <input name='{{"image": "alpine", "command": "true", "x": "' value='"}}'></form>""")
    with other.expect_navigation() as navigation:
        other.evaluate("document.forms[0].submit()")
    response = navigation.value
    assert response is not None and response.status == 403
    assert runtime.get("/tasks/ui-guard-form").status_code == 404


# auth: IAM through the signing proxy, API keys and Basic -----------------------------------------


def test_the_page_works_through_the_command_lines_signing_proxy(runtime: Runtime, browser: Browser,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Against an IAM deployment the browser goes through `fastlane ui`'s proxy, which signs each
    request (the local runtime takes the signatures without checking them)."""
    from fastlane_cli.auth import SigV4
    from fastlane_cli.proxy import SigningProxy

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    created = post(runtime, "ui-proxy", command="true", startIn="1h")
    proxy = SigningProxy(runtime.url, SigV4(None, "us-east-1", runtime.url)).start()
    tab = open_tab(browser)
    try:
        page = tab.page
        page.goto(f"{proxy.url}/ui#/job/ui-proxy/{created['jobId']}")
        expect(page.locator('section[aria-label="Specification"]')).to_contain_text("alpine")
        page.click('[data-action="pause"]')
        wait_until(lambda: job(runtime, created)["schedule"]["paused"], timeout=10, what="a pause through the proxy")
        tab.loaded_only_from(proxy.url)
        assert not tab.errors, tab.errors
    finally:
        tab.page.context.close()
        proxy.stop()


BASIC = ("ana", "s3cret")
BASIC_HEADER = {"Authorization": "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A runtime whose app was declared for API keys (which API Gateway would check; here nothing
    does) and that asks for Basic credentials itself."""
    env = {"FASTLANE_API_AUTH": "api_key", "BASIC_AUTH_USERNAME": BASIC[0], "BASIC_AUTH_PASSWORD": BASIC[1]}
    with running_runtime(tmp_path_factory.mktemp("ui-auth"), env, headers=BASIC_HEADER) as rt:
        yield rt


def test_the_browser_asks_for_basic_credentials_and_the_page_for_an_api_key_once_per_tab(guarded: Runtime,
                                                                                         browser: Browser,
                                                                                         shots: Path) -> None:
    asked = guarded.get("/ui")
    assert asked.status_code == 401 and asked.headers["WWW-Authenticate"].startswith("Basic")
    answer = guarded.post("/tasks/ui-auth", json={"image": "alpine", "command": "sh -c 'echo one; sleep 2; echo two'"},
                          headers=BASIC_HEADER)
    assert answer.status_code == 200
    created = answer.json()

    tab = open_tab(browser, http_credentials={"username": BASIC[0], "password": BASIC[1]})
    try:
        page = tab.page
        seen: list[Any] = []
        page.on("request", lambda request: seen.append(request))
        page.goto(f"{guarded.url}/ui")
        expect(page.locator("#api-key")).to_be_focused()
        expect(page.locator("main")).to_have_text(re.compile(r"^API key\s*This service needs an API key"))
        shoot(page, shots, "api-key")
        assert {guarded.path(r.url) for r in seen} == {"/ui", "/ui/app.js", "/ui/app.css"}  # no data without the key
        page.fill("#api-key", "k-123")
        page.press("#api-key", "Enter")
        expect(page.locator("h1")).to_have_text("Overview")
        expect(page.locator('section[aria-label="Pools"]')).to_contain_text("default")

        # live output needs a token when auth is on: the page asks the API for one
        page.goto(f"{guarded.url}/ui#/execution/ui-auth/{created['jobId']}/{created['executionId']}")
        expect(page.locator(".out.live .line", has_text="two")).to_be_visible()
        expect(page.locator(".live-exit [data-exit-code]")).to_have_text("0")
        calls = [r for r in seen if not guarded.path(r.url).startswith("/ui")]
        assert calls and all(r.all_headers().get("x-api-key") == "k-123" for r in calls)
        assert any(guarded.path(r.url).endswith("/stream/token") for r in calls)

        other = page.context.new_page()  # another tab asks again
        other.goto(f"{guarded.url}/ui")
        expect(other.locator("#api-key")).to_be_visible()
        page.click("#session button")  # forget the key
        expect(page.locator("#api-key")).to_be_visible()
        assert not [e for e in tab.errors if "status of 4" not in e], tab.errors
    finally:
        tab.page.context.close()
