"""The OpenAPI 3.1 description of the HTTP API, served at GET /openapi.json: every route, body,
answer and error, written as data. The test suite fuzzes the running service against it
(tests/system/test_openapi.py), so what it says is what the service does."""
from __future__ import annotations

import copy
from typing import Any

from ..config import DEFAULT_SECRET_ENV_PATTERNS
from ..domain.idempotency import HEADER as IDEMPOTENCY_HEADER
from ..domain.idempotency import KEEP_SECONDS, MAX_KEY_LENGTH, REPLAYED_HEADER
from ..domain.payload import (
    DEFAULT_CATCHUP_WINDOW,
    EVENTS,
    MAX_CATCHUP_WINDOW,
    MAX_CONCURRENCY_LIMIT,
    MAX_HEADERS_PER_HOOK,
    MAX_HOOKS_PER_EVENT,
    MAX_JITTER,
    MAX_RECIPIENTS_PER_EVENT,
    OVERLAP_POLICIES,
)
from ..domain.retry import ACTIONS, MAX_BACKOFF_FACTOR, MAX_BACKOFF_SECONDS, MAX_EXIT_CODE, MAX_RULES, REASONS
from ..domain.timeline import MAX_ENTRIES as MAX_TIMELINE_ENTRIES
from .output_tail import OUTPUT_TAIL_BYTES

STATUSES = ["enqueued", "pulling", "running", "done", "failed", "timedout", "expired", "stopped"]
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
URL = {"type": "string", "format": "uri"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, **extra}


# A scheduled job's schedule in its details (null for a job that runs once, now).
SCHEDULE = {
    "type": ["object", "null"],
    "properties": {
        "type": {"enum": ["cron", "once"]}, "pending": {"type": "boolean"}, "nextRunAt": {"type": ["number", "null"]},
        "cron": {"type": "string"}, "timezone": {"type": "string"},
        "overlap": {"enum": ["allow", "forbid", "replace", "buffer"]}, "jitter": {"type": "number"},
        "startAt": {"type": "number"}, "startIn": {"type": "string"}, "catchupWindow": {"type": "number"},
        "paused": {"type": "boolean"}, "pausedAt": {"type": ["number", "null"]},
        "skippedTicks": {"type": "integer", "minimum": 0}, "lastSkippedAt": {"type": ["number", "null"]},
        "lastSkipReason": {"type": ["string", "null"], "description": "why the last skipped tick did not run"},
        "nextRuns": {"type": "array", "items": {"type": "number"},
                     "description": "the next five fire times (epoch seconds, jitter included); empty while paused"},
        "waitingTick": {"type": ["number", "null"], "description": "overlap buffer: the tick waiting to run"},
    },
    "required": ["type", "pending", "nextRunAt", "catchupWindow", "paused", "pausedAt", "skippedTicks",
                 "lastSkippedAt", "lastSkipReason", "nextRuns"],
}

PAGINATION = {
    "total": {"type": "integer", "minimum": 0},
    "page": {"type": "integer", "minimum": 1},
    "pages": {"type": "integer", "minimum": 0},
    "perPage": {"type": "integer", "minimum": 1},
    "hasNext": {"type": "boolean"},
    "hasPrev": {"type": "boolean"},
    "nextUrl": {"type": ["string", "null"], "format": "uri"},
    "prevUrl": {"type": ["string", "null"], "format": "uri"},
}
ID_AND_URL = _object({"id": {"type": "string"}, "url": URL})
HOOK = _object({
    "url": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": MAX_HEADERS_PER_HOOK,
                "description": "Sent as given; shown as *** everywhere."},
    "retries": {"type": "integer", "minimum": 0},
}, required=["url"])


def _per_event(item: dict[str, Any], most: int) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {event: {"type": "array", "items": item, "maxItems": most} for event in EVENTS}}


RETRY_POLICY = {
    "type": ["object", "null"], "additionalProperties": False,
    "description": "Instead of `retries`: how many, with what backoff, and rules on why an execution failed "
                   "(docs/execution.md#retry-policies). Giving both is a 400.",
    "properties": {
        "attempts": {"type": "integer", "minimum": 0},
        "backoff": {"type": "object", "additionalProperties": False, "properties": {
            "initial": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_BACKOFF_SECONDS},
            "factor": {"type": "number", "minimum": 1, "maximum": MAX_BACKOFF_FACTOR},
            "max": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_BACKOFF_SECONDS},
            "jitter": {"type": "number", "minimum": 0, "maximum": 1}}},
        "rules": {"type": "array", "maxItems": MAX_RULES, "items": {
            "type": "object", "additionalProperties": False, "required": ["action"], "properties": {
                "reasons": {"type": "array", "minItems": 1, "items": {"enum": list(REASONS)}},
                "exitCodes": {"type": "array", "minItems": 1, "items": {"oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": MAX_EXIT_CODE},
                    {"type": "string", "pattern": "^[0-9]{1,3}-[0-9]{1,3}$", "description": "an inclusive range a-b"}]}},
                "action": {"enum": list(ACTIONS)}}}},
        "default": {"enum": list(ACTIONS)},
    },
}

JOB_PAYLOAD = _object({
    "image": {"type": "string", "minLength": 1, "maxLength": 1024,
              "description": "name, name:tag, registry:port/name:tag or name@sha256:digest"},
    "command": {"type": "string", "minLength": 1, "description": "split shell-style into arguments"},
    "envs": {"type": "object", "additionalProperties": {"type": "string"},
             "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": 255},
             "description": "Values of names containing one of " + ", ".join(DEFAULT_SECRET_ENV_PATTERNS)
                            + " (configurable) are shown as ***."},
    "metadata": {"type": ["object", "null"], "description": "free client data, shown as metadata.custom"},
    "retries": {"type": ["integer", "null"], "minimum": 0},
    "retry": RETRY_POLICY,
    "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "expiration": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 253402300799},
    "startAt": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "startIn": {"type": ["string", "null"], "pattern": "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"},
    "cron": {"type": ["string", "null"], "maxLength": 256, "description": "5-field Unix cron"},
    "timezone": {"type": ["string", "null"], "maxLength": 64, "description": "IANA name; cron only"},
    "overlap": {"type": ["string", "null"], "enum": [*OVERLAP_POLICIES, None],
                "description": "cron only: allow, forbid (skip a tick while one runs), replace, or buffer (one "
                               "tick waits for the run before it)"},
    "catchupWindow": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_CATCHUP_WINDOW,
                      "description": f"scheduled only: how late (seconds) a run that could not fire on time may "
                                     f"still run (default {DEFAULT_CATCHUP_WINDOW:g}); one late run at most"},
    "jitter": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_JITTER,
               "description": "cron only: each tick fires at a random offset in [0, jitter) seconds, less than "
                              "the time between two ticks"},
    "concurrency": {"type": ["object", "null"], "additionalProperties": False, "required": ["key", "limit"],
                    "description": "at most `limit` executions of the jobs naming `key` ({taskId} filled in) "
                                   "run at once; the others wait, enqueued",
                    "properties": {"key": {"type": "string", "pattern": "^([A-Za-z0-9_.:/-]|\\{taskId\\}){1,128}$"},
                                   "limit": {"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY_LIMIT}}},
    "notify": _per_event({"type": "string", "format": "email"}, MAX_RECIPIENTS_PER_EVENT),
    "webhooks": _per_event(HOOK, MAX_HOOKS_PER_EVENT),
}, required=["image", "command"], additionalProperties=True,
    description="At most one of startAt, startIn and cron. Limits: docs/decisions.md#input.")

EXECUTION = _object({
    "executionId": {"type": "string", "format": "uuid"},
    "createdAt": {"type": "number"},
    "startedAt": NULLABLE_NUMBER,
    "finishedAt": NULLABLE_NUMBER,
    "image": {"type": "string"},
    "command": {"type": "string"},
    "status": {"type": "string", "enum": STATUSES},
    "exitCode": {"type": ["integer", "null"]},
    "requestIPAddress": NULLABLE_STRING,
    "metadata": {"type": "object"},
    "log": {**NULLABLE_STRING, "description": f"stdout (execution details; its last {OUTPUT_TAIL_BYTES} bytes); "
                                              "null in job details and before a container ran"},
    "error": {**NULLABLE_STRING, "description": "stderr then the platform's reason (execution details); "
                                                "the reason only in job details"},
    "reason": {**NULLABLE_STRING, "description": "why the platform failed or ended the execution"},
    "waitingFor": {**NULLABLE_STRING, "description": "while enqueued: what it waits for, in one sentence (a full "
                                                     "pool or concurrency key, a throttled launch)"},
    "concurrency": {"type": ["object", "null"], "description": "the concurrency key (its {taskId} filled in) and "
                                                               "limit it takes a slot of, with its pool's"},
    "logTruncated": {"type": "boolean"},
    "errorTruncated": {"type": "boolean"},
    "outputLimitBytes": {"type": ["integer", "null"]},
    "outputError": {**NULLABLE_STRING, "description": "execution details only: why `log` and `error` hold no "
                                                      "output this time (the log store could not be read)"},
    "stdoutUrl": URL,
    "stderrUrl": URL,
    "notifications": {"type": "array", "items": {"type": "object"},
                      "description": "every notification attempt; a webhook's `url` is shown redacted"},
    "url": URL,
})

# Where an execution's time went (execution details, the live logs' end frame): docs/execution.md#timeline.
TIMELINE = {"type": "array", "maxItems": MAX_TIMELINE_ENTRIES, "description": (
    "oldest first, one entry per change of state and per wait: accepted (why), waiting (what for; `count` and "
    "`lastAt` when it repeated), pulling (`taskArn`), running (`pullStartedAt`, `pullStoppedAt`), and the end "
    "(`exitCode`, `stopCode`, `stoppedReason`, the service's `reason`, `cause`); past the bound, older entries "
    "are counted in one `omitted` entry"),
    "items": {"type": "object", "required": ["at", "status"], "properties": {
        "at": {"type": "number"}, "status": {"type": "string"}, "reason": {"type": "string"}}}}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string"}, "operation": {"type": "string"}, "field": {"type": "string"}},
                     required=["error", "operation"]),
    "JobPayload": JOB_PAYLOAD,
    "Enqueued": _object({
        "taskId": {"type": "string"}, "jobId": {"type": "string", "format": "uuid"},
        "executionId": {"type": ["string", "null"], "format": "uuid"},
        "executionUrl": {"type": ["string", "null"], "format": "uri"}, "queueJobId": NULLABLE_STRING,
        "jobUrl": URL, "taskUrl": URL}),
    "TaskList": _object({"items": {"type": "array", "items": _object({
        "taskId": {"type": "string"}, "createdAt": {"type": "number"}, "lastModifiedAt": {"type": "number"},
        "jobsCount": {"type": "integer", "minimum": 0}, "url": URL})}, **PAGINATION,
        "totalCapped": {"type": "boolean", "description": "with a prefix only: `total` stopped counting at the "
                                                          "entries a listing reaches"}},
        required=["items", *PAGINATION]),
    "TaskDetails": _object({"taskId": {"type": "string"}, "createdAt": {"type": "number"},
                            "lastModifiedAt": {"type": "number"},
                            "jobs": {"type": "array", "items": _object({"id": {"type": "string", "format": "uuid"},
                                                                        "createdAt": {"type": "number"}, "url": URL})},
                            **PAGINATION}),
    "Execution": EXECUTION,
    "JobDetails": _object({"task": ID_AND_URL, "job": _object({
        "jobId": {"type": "string", "format": "uuid"}, "url": URL, "createdAt": {"type": "number"},
        "lastModifiedAt": {"type": "number"}, "image": {"type": "string"}, "command": {"type": "string"},
        "taskId": {"type": "string"}, "scheduled": {"type": "boolean"}, "schedule": SCHEDULE,
        "executionCount": {"type": "integer", "minimum": 0}, "requestIPAddress": NULLABLE_STRING,
        "metadata": _object({"retries": {"type": "integer"}, "retry_count": {"type": "integer"},
                             "retry": {"type": "object", "description": "the job's retry policy, when it has one"},
                             "notify": {"type": "object"},
                             "webhooks": {"type": "object", "description": "the hooks, each `url` redacted "
                                          "(scheme, host, first path segment, then `…`) and header values `***`"},
                             "expiration": NULLABLE_NUMBER, "timeout": NULLABLE_NUMBER,
                             "envs": {"type": "object", "additionalProperties": {"type": "string"}},
                             "custom": {"type": "object"}}),
        "executions": {"type": "array", "items": _ref("Execution")}}), **PAGINATION}),
    "ExecutionDetails": _object({"task": ID_AND_URL, "job": ID_AND_URL, "execution": {"allOf": [
        _ref("Execution"), _object({"timeline": TIMELINE})]}}),
    "JobStopped": _object({"taskId": {"type": "string"}, "jobId": {"type": "string"}, "jobUrl": URL, "taskUrl": URL}),
    "ScheduleChanged": _object({"taskId": {"type": "string"}, "jobId": {"type": "string"}, "jobUrl": URL,
                                "schedule": SCHEDULE}),
    "ExecutionStopped": _object({"task": ID_AND_URL, "job": ID_AND_URL, "execution": ID_AND_URL}),
    "StreamToken": _object({"taskId": {"type": "string"}, "jobId": {"type": "string"},
                            "executionId": NULLABLE_STRING, "token": NULLABLE_STRING,
                            "expiresAt": {"type": ["integer", "null"]}}),
    "Health": _object({"healthy": {"type": "boolean"}, "checks": {"type": "object",
                                                                   "additionalProperties": {"type": "string"}},
                       "errors": {"type": "array", "items": _object({"source": {"type": "string"},
                                                                     "message": {"type": "string"}})}}),
    "Status": _object({"version": {"type": "string"}, "tasks": {"type": "integer"}, "jobs": {"type": "integer"},
                       "executions": {"type": "object", "additionalProperties": {"type": "integer"}},
                       "scheduled": _object({"count": {"type": "integer"}, "jobs": {"type": "array"}}),
                       "queues": {"type": "object"}, "pools": {"type": "array", "items": {"type": "object"}},
                       "concurrency": {"type": "array", "description": "concurrency keys in use",
                                       "items": _object({"key": {"type": "string"}, "running": {"type": "integer"},
                                                         "limit": {"type": "integer"}})},
                       "backend": {"type": "string", "description": "aws or local"},
                       "isolation": {"type": "string", "description": "how job containers are isolated"},
                       "notifications": {"type": "object"}},
                      required=["version", "tasks", "jobs", "executions", "scheduled", "queues", "pools", "concurrency",
                                "backend",
                                "isolation"]),
}

ERRORS = {
    "400": "bad input: the error names the field and the rule",
    "401": "Basic auth is on and the credentials are missing or wrong",
    "403": "refused by the local runtime: a cross-site browser request or a foreign Host; a browser's action from "
           "another origin or without the X-Fastlane-Client header and a JSON body (docs/ui.md); or a live-log token "
           "that is not renewed (not this page's, expired, or past its page's lifetime limit)",
    "404": "unknown task, job, execution, page or route",
    "409": "the state of the job or execution does not allow it; or the Idempotency-Key was used with another "
           "body, or its first request is still in progress (then with Retry-After)",
    "413": "a body or field over a limit",
    "503": "a dependency is down, or auth is misconfigured",
}


def _error(code: str) -> dict[str, Any]:
    return {"description": ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}


def _parameter(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, "description": description}


TASK_ID = _parameter("taskId", "path", {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,255}$"},
                     "a client's name for a group of jobs (not '.', '..', nor starting with '#')")
JOB_ID = _parameter("jobId", "path", {"type": "string", "format": "uuid"}, "a job's UUID")
EXECUTION_ID = _parameter("executionId", "path", {"type": "string", "format": "uuid"}, "an execution's UUID")
PAGE = _parameter("page", "query", {"type": "integer", "minimum": 1}, "page number, 1 by default")
TOKEN = _parameter("token", "query", {"type": "string"}, "the next page's token (Fastlane-Next-Token)")
IDEMPOTENCY_KEY = _parameter(
    IDEMPOTENCY_HEADER, "header", {"type": "string", "pattern": f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"},
    f"a key of the client's (a UUID, say): the same key and body within {KEEP_SECONDS // 3600} hours get the first "
    "answer again and create nothing; another body is a 409. Only successes are kept "
    "(docs/decisions.md#idempotency-keys)")


def _operation(operation_id: str, summary: str, ok: dict[str, Any], errors: tuple[str, ...],
               parameters: list[dict[str, Any]], body: bool = False) -> dict[str, Any]:
    answers = {"200": ok, **{code: _error(code) for code in ("401", "403", *errors, "503")}}
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary,
                                 "parameters": copy.deepcopy(parameters), "responses": answers}
    if body:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": _ref("JobPayload")}}}
    return operation


def _renewal(operation_id: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """POST .../stream/token: a body with the page's token renews it; none asks for a new one."""
    operation = _operation(operation_id, "a live-log token for the page: the presented `token` renewed (it keeps "
                           "its page's issue time and lifetime limit), or a new one", _json("StreamToken"),
                           ("400", "404"), parameters)
    operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": _object(
        {"token": {"type": "string", "description": "the page's current token"}}, required=[])}}}
    return operation


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


# POST /tasks/{taskId}, PUT .../jobs/{jobId}, POST .../retry: what they answer, first or replayed
ENQUEUED = {**_json("Enqueued", "OK; or, with an Idempotency-Key already answered, that first answer"),
            "headers": {REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true"]},
                                          "description": "present on a replayed answer only"}}}


TEXT = {"description": "the output, text; paged with Fastlane-Next-Token and a Link rel=next header",
        "headers": {"Fastlane-Exit-Code": {"schema": {"type": "string"}, "description": "empty while unknown"}},
        "content": {"text/plain": {"schema": {"type": "string"}}}}
HTML = {"description": "the live log page", "content": {"text/html": {"schema": {"type": "string"}}}}
# The job browser (docs/ui.md): its page and its two files, each with a strict Content-Security-Policy.
UI_PAGE = {"description": "the job browser's page", "content": {"text/html": {"schema": {"type": "string"}}}}
UI_FILES = {"app.js": ("get_ui_app_js", "the job browser's script", "text/javascript"),
            "app.css": ("get_ui_app_css", "the job browser's style sheet", "text/css")}


def _ui_file(operation_id: str, summary: str, media_type: str) -> dict[str, Any]:
    operation = _operation(operation_id, summary, {"description": summary, "headers": {"ETag": {
        "schema": {"type": "string"}}}, "content": {media_type: {"schema": {"type": "string"}}}}, (), [])
    operation["responses"]["304"] = {"description": "not modified: If-None-Match named its ETag"}
    return operation


TASK, JOB, EXECUTION_PATH = "/tasks/{taskId}", "/tasks/{taskId}/jobs/{jobId}", \
    "/tasks/{taskId}/jobs/{jobId}/executions/{executionId}"
JOB_PARAMETERS, EXECUTION_PARAMETERS = [TASK_ID, JOB_ID], [TASK_ID, JOB_ID, EXECUTION_ID]


def _paths() -> dict[str, Any]:
    from . import openapi_across_tasks as across_tasks  # it builds on this module's parts

    paths: dict[str, Any] = {
        "/": {"get": _operation("index", "healthcheck", _json("Health"), (), [])},
        "/healthcheck": {"get": _operation("healthcheck", "dependency checks (503 when one fails)", _json("Health"),
                                           (), [])},
        "/status": {"get": _operation("status", "farm status", _json("Status"), (), [])},
        "/openapi.json": {"get": _operation("get_openapi", "this description",
                                            {"description": "OpenAPI 3.1",
                                             "content": {"application/json": {"schema": {"type": "object"}}}},
                                            (), [])},
        "/tasks": {"get": _operation("get_tasks", "list tasks, oldest first (by id with a prefix)", _json("TaskList"),
                                     ("400", "404"), [PAGE, across_tasks.PREFIX])},
        **across_tasks.paths(),
        TASK: {"get": _operation("get_task", "task details with its jobs", _json("TaskDetails"), ("400", "404"),
                                 [TASK_ID, PAGE]),
               "post": _operation("enqueue_job", "create a job and run or schedule it", ENQUEUED,
                                  ("400", "404", "409", "413"), [TASK_ID, IDEMPOTENCY_KEY], body=True)},
        JOB: {"get": _operation("get_job", "job details with its latest executions", _json("JobDetails"),
                                ("400", "404"), [*JOB_PARAMETERS, PAGE]),
              "put": _operation("update_job", "create or replace the job with this UUID", ENQUEUED,
                                ("400", "404", "409", "413"), [*JOB_PARAMETERS, IDEMPOTENCY_KEY], body=True)},
        f"{JOB}/stop": {"post": _operation("stop_job", "stop the job's running execution and future runs",
                                           _json("JobStopped"), ("400", "404"), JOB_PARAMETERS)},
        f"{JOB}/pause": {"post": _operation("pause_job", "pause the job's schedule: it fires nothing until resumed",
                                            _json("ScheduleChanged"), ("400", "404", "409"), JOB_PARAMETERS)},
        f"{JOB}/resume": {"post": _operation("resume_job", "resume the job's schedule from now",
                                             _json("ScheduleChanged"), ("400", "404", "409"), JOB_PARAMETERS)},
        f"{JOB}/retry": {"post": _operation("retry_job", "start a new execution now (its body is ignored); for a "
                                            "scheduled job, run now: one execution, the schedule unchanged", ENQUEUED,
                                            ("400", "404", "409"), [*JOB_PARAMETERS, IDEMPOTENCY_KEY])},
        f"{JOB}/stream": {"get": _operation("get_job_stream", "live log page of the job", HTML, ("400", "404"),
                                            JOB_PARAMETERS)},
        f"{JOB}/stream/token": {"post": _renewal("renew_job_stream_token", JOB_PARAMETERS)},
        EXECUTION_PATH: {"get": _operation("get_execution", "execution details, with stdout in log and stderr in "
                                           "error", _json("ExecutionDetails"), ("400", "404"), EXECUTION_PARAMETERS)},
        f"{EXECUTION_PATH}/stop": {"post": _operation("stop_execution", "stop this execution only",
                                                      _json("ExecutionStopped"), ("400", "404", "409"),
                                                      EXECUTION_PARAMETERS)},
        f"{EXECUTION_PATH}/stream": {"get": _operation("get_execution_stream", "live log page of the execution",
                                                       HTML, ("400", "404"), EXECUTION_PARAMETERS)},
        f"{EXECUTION_PATH}/stream/token": {"post": _renewal("renew_execution_stream_token", EXECUTION_PARAMETERS)},
        "/ui": {"get": _operation("get_ui", "the job browser (docs/ui.md)", UI_PAGE, (), [])},
        **{f"/ui/{name}": {"get": _ui_file(*about)} for name, about in UI_FILES.items()},
    }
    for which, what in (("stdout", "stdout"), ("stderr", "stderr"), ("logs", "stdout, a line -=-, then stderr")):
        paths[f"{JOB}/{which}"] = {"get": _operation(f"get_job_{which}", f"{what} of the latest execution", TEXT,
                                                     ("400", "404"), [*JOB_PARAMETERS, TOKEN])}
        paths[f"{EXECUTION_PATH}/{which}"] = {"get": _operation(f"get_execution_{which}", f"{what} of the execution",
                                                                TEXT, ("400", "404"), [*EXECUTION_PARAMETERS, TOKEN])}
    return paths


def document(base_url: str = "") -> dict[str, Any]:
    """The description, with this deployment's address as its server."""
    from ..config import get_settings
    from . import openapi_across_tasks as across_tasks

    return {
        "openapi": "3.1.0",
        "info": {"title": "fastlane", "version": get_settings().version,
                 "description": "Run containers as jobs over HTTP. Every path also answers with a trailing slash. "
                                "Live logs go over the websocket API (docs/live-logs.md)."},
        "servers": [{"url": base_url or "/"}],
        "paths": _paths(),
        "components": {"schemas": copy.deepcopy({**SCHEMAS, **across_tasks.SCHEMAS})},
    }
