"""The HTTP API, as the command line uses it: every failure becomes one line that says what to fix."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import requests

from . import __version__
from .auth import Auth, auth_for
from .config import Settings
from .errors import AUTH, CONFLICT, NOT_FOUND, UNAVAILABLE, UNEXPECTED, USAGE, CliError

TIMEOUT = (10, 60)  # seconds to connect, seconds to wait for an answer
HINTS = {
    "none": "give --user/--password, --api-key or --aws-profile (or FASTLANE_USER/FASTLANE_PASSWORD, "
            "FASTLANE_API_KEY, FASTLANE_AWS_PROFILE)",
    "basic": "check --user/--password (FASTLANE_USER/FASTLANE_PASSWORD)",
    "api-key": "check --api-key (FASTLANE_API_KEY) and that the key is in the API's usage plan",
    "sigv4": "check that your AWS identity (--aws-profile, AWS_PROFILE) may call execute-api:Invoke on this API "
             "and that --aws-region is the API's",
}


NOT_FOUND_HINTS = {
    "taskId": "; `fastlane ls` lists the tasks",
    "jobId": "; `fastlane ls TASK` lists a task's jobs",
    "executionId": "; `fastlane ls TASK JOB` lists a job's executions",
}


def path(*segments: str) -> str:
    """A route's path from its segments (task ids may hold ':'; nothing else needs escaping)."""
    return "/" + "/".join(quote(segment, safe=":") for segment in segments)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise CliError(f"the service answered {self.status} with something that is not JSON: "
                           f"{self.body[:200]!r}", UNEXPECTED) from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _service_error(answer: Answer) -> tuple[str, str | None]:
    """The service's error sentence and the field it names, or a short form of whatever came."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("message") or body.get("Message")
        if isinstance(message, str):
            field = body.get("field")
            return message, field if isinstance(field, str) else None
    text = answer.text.strip().replace("\n", " ")
    return (text[:200] or "no details"), None


def _as_signed(request: Any) -> Any:
    """The request as signed: without it requests would put ~/.netrc's credentials over ours."""
    return request


class Api:
    def __init__(self, settings: Settings, auth: Auth | None = None) -> None:
        self.settings = settings
        self.base = settings.url
        self.auth = auth if auth is not None else auth_for(settings)
        self._http = requests.Session()

    def url(self, route: str, params: dict[str, Any] | None = None) -> str:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        return self.base + route + (f"?{query}" if query else "")

    def request(self, method: str, route: str, body: Any = None, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201)) -> Answer:
        """One request; an answer outside `ok` raises CliError with the service's sentence."""
        url = route if route.startswith(("http://", "https://")) else self.url(route, params)
        data = b"" if body is None else json.dumps(body).encode()
        sent = {"Accept": "application/json", "User-Agent": f"fastlane-cli/{__version__}", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        signed = self.auth.sign(method, url, sent, data)
        try:
            response = self._http.request(method, url, data=data or None, headers=signed, timeout=TIMEOUT,
                                          allow_redirects=False, auth=_as_signed)
        except requests.exceptions.SSLError as error:
            raise CliError(f"TLS with {self.base} failed ({error.__class__.__name__}); check --url", UNAVAILABLE) from None
        except requests.exceptions.Timeout:
            raise CliError(f"the service at {self.base} did not answer in time; is it up? (--url, FASTLANE_URL)",
                           UNAVAILABLE) from None
        except requests.exceptions.ConnectionError:
            local = "127.0.0.1" in self.base or "localhost" in self.base
            hint = "start it with `make run`, or" if local else "check"
            raise CliError(f"cannot reach the service at {self.base}: {hint} --url / FASTLANE_URL", UNAVAILABLE) from None
        answer = Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)
        if answer.status not in ok:
            self.fail(method, route, answer)
        return answer

    def fail(self, method: str, route: str, answer: Answer) -> None:
        message, field = _service_error(answer)
        status = answer.status
        if status in (401, 403):
            raise CliError(f"the service refused the credentials ({status}: {message}); {HINTS[self.auth.mode]}", AUTH)
        if status == 404:
            raise CliError(message.rstrip(".") + NOT_FOUND_HINTS.get(field or "", ""), NOT_FOUND)
        if status in (400, 413, 411, 415):
            raise CliError(f"the service refused the request ({status}): {message}", USAGE)
        if status == 409:
            raise CliError(f"conflict (409): {message}", CONFLICT)
        if status == 429 or status >= 500:
            raise CliError(f"the service is unavailable ({status}): {message}; try again later", UNAVAILABLE)
        raise CliError(f"unexpected answer to {method} {route}: {status} {message}", UNEXPECTED)

    def get(self, route: str, **params: Any) -> Any:
        return self.request("GET", route, params=params).json()

    def post(self, route: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", route, body=body, headers=headers).json()

    def output(self, task: str, job: str, execution: str | None, which: str) -> tuple[list[bytes], dict[str, str]]:
        """All of an execution's stdout or stderr (the job's latest without `execution`), every page
        of it, and the first page's headers (Fastlane-Execution-Id, -Status, -Exit-Code)."""
        route = path("tasks", task, "jobs", job, *(("executions", execution) if execution else ()), which)
        answer = self.request("GET", route, headers={"Accept": "text/plain"})
        pages, first = [answer.body], answer.headers
        executed = first.get("fastlane-execution-id") or execution
        while answer.headers.get("fastlane-next-token") and executed:
            answer = self.request("GET", path("tasks", task, "jobs", job, "executions", executed, which),
                                  params={"token": answer.headers["fastlane-next-token"]},
                                  headers={"Accept": "text/plain"})
            pages.append(answer.body)
        return pages, first
