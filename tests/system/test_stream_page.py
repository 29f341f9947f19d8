"""The live log page in a real browser (headless Chromium): it connects to the local runtime's
websocket, shows the lines of a running job as they are written, stderr apart, then the exit
code; and nothing from the output becomes markup."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .browser import Browser
from .conftest import Runtime, running_runtime

pytestmark = pytest.mark.system

COMMAND = ("bash -c 'for i in $(seq 1 8); do echo line $i; sleep 1; done; "
           "echo \"<img src=x onerror=document.title=1>\" >&2; exit 3'")

PAGE_STATE = """JSON.stringify({
  lines: Array.from(document.querySelectorAll("#out .line:not(.note)")).map(e => [e.dataset.stream, e.textContent]),
  exit: document.getElementById("exit").textContent,
  code: document.getElementById("exit").getAttribute("data-exit-code"),
  state: document.getElementById("state").textContent,
  images: document.querySelectorAll("img").length,
  title: document.title,
  stdoutColor: (document.querySelector("#out .stdout") ? getComputedStyle(document.querySelector("#out .stdout")).color : null),
  stderrColor: (document.querySelector("#out .stderr") ? getComputedStyle(document.querySelector("#out .stderr")).color : null)
})"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("stream-page")) as rt:
        yield rt


def test_the_stream_page_shows_a_running_jobs_lines_as_they_come_then_its_exit_code(chromium: str,
                                                                                    runtime: Runtime) -> None:
    import json

    job = runtime.post("/tasks/page", json={"image": "ubuntu", "command": COMMAND}).json()
    page = runtime.get(f"/tasks/page/jobs/{job['jobId']}/stream")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "connect-src ws://127.0.0.1:" in page.headers["Content-Security-Policy"]

    browser = Browser(chromium, f"{runtime.url}/tasks/page/jobs/{job['jobId']}/stream")
    try:
        browser.attach()
        browser.wait_for('document.readyState === "complete" && !!document.getElementById("exit")')
        seen: list[tuple[float, dict]] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            state = json.loads(browser.evaluate(PAGE_STATE))
            seen.append((time.monotonic(), state))
            if state["state"] == "done":  # the close frame came, with reason done
                break
            time.sleep(0.2)
    finally:
        browser.close()

    final = seen[-1][1]
    assert final["lines"] == [["stdout", f"line {i}"] for i in range(1, 9)] + [
        ["stderr", "<img src=x onerror=document.title=1>"]]
    assert final["exit"] == "exit code 3 (failed)" and final["state"] == "done"
    assert final["images"] == 0 and final["title"] != "1"  # the output was text, not markup
    assert final["stderrColor"] != final["stdoutColor"]
    # the lines appeared one after the other while the job ran, before the exit code
    first_line = next(at for at, s in seen if s["lines"])
    exit_shown = next(at for at, s in seen if s["code"] is not None)
    assert exit_shown - first_line > 2.0
    counts = sorted({len(s["lines"]) for _, s in seen if s["code"] is None})
    assert len(counts) >= 4, f"the page showed the lines in too few steps: {counts}"


def test_the_stream_pages_answer_404_for_unknown_jobs_and_executions(runtime: Runtime) -> None:
    job = runtime.post("/tasks/page", json={"image": "ubuntu", "command": "true"}).json()
    missing = runtime.get("/tasks/page/jobs/01234567-89ab-7def-8123-456789abcdef/stream")
    assert missing.status_code == 404 and missing.json()["operation"] == "get_job_stream"
    missing = runtime.get(f"/tasks/page/jobs/{job['jobId']}/executions/01234567-89ab-7def-8123-456789abcdef/stream")
    assert missing.status_code == 404
    found = runtime.get(f"/tasks/page/jobs/{job['jobId']}/executions/{job['executionId']}/stream/")
    assert found.status_code == 200 and job["executionId"] in found.text
