"""The OpenAPI description of the routes across tasks (GET /executions, POST /executions/retry)
and of the task list's prefix, which openapi.py adds to the document it serves."""
from __future__ import annotations

from typing import Any

from ..domain.listing import CLOCK_SKEW_SECONDS, MAX_LISTED, MAX_RETRY_IDS
from .openapi import (
    IDEMPOTENCY_KEY,
    PAGE,
    PAGINATION,
    STATUSES,
    URL,
    _json,
    _object,
    _operation,
    _parameter,
    _ref,
)

_PREFIX_PATTERN = "^[A-Za-z0-9_.:-]{1,255}$"
_ONE_STATUS = "(" + "|".join(STATUSES) + ")"
TOTAL_CAPPED = {"type": "boolean", "description": f"`total` stopped counting at the {MAX_LISTED:,} entries a "
                                                  "listing reaches: there are at least that many"}

PREFIX = _parameter("prefix", "query", {"type": "string", "pattern": _PREFIX_PATTERN},
                    "only the tasks whose id starts with it, listed by id (byte order) instead of oldest first; "
                    f"pages reach the first {MAX_LISTED:,} of them")
STATUS = _parameter("status", "query", {"type": "string", "pattern": f"^{_ONE_STATUS}(,{_ONE_STATUS})*$"},
                    "one status or several, comma-separated; every status when absent")
SINCE = _parameter("since", "query", {"type": "number", "minimum": 0},
                   "epoch seconds: only the executions that entered their status at or after it; not later than "
                   f"now (give or take {CLOCK_SKEW_SECONDS:g} s)")
TASK = _parameter("task", "query", {"type": "string", "pattern": _PREFIX_PATTERN},
                  "only the executions of tasks whose id starts with it")

LISTED_EXECUTION = {"allOf": [_ref("Execution"), _object({
    "taskId": {"type": "string"}, "jobId": {"type": "string", "format": "uuid"},
    "statusAt": {"type": "number", "description": "when it entered its status (creation, for enqueued): the "
                                                  "listing's order"},
    "jobUrl": URL, "taskUrl": URL})]}

RETRY_RESULT = _object({
    "executionId": {"type": "string", "format": "uuid", "description": "the id asked"},
    "status": {"type": "integer", "description": "what POST .../jobs/{jobId}/retry answers for its job: 200, 404 "
                                                 "(unknown id), 409 (an execution of the job has not ended), 503"},
    "taskId": {"type": ["string", "null"]}, "jobId": {"type": ["string", "null"]},
    "retry": {**_ref("Enqueued"), "description": "with 200: that route's answer (the new execution); the ids of "
                                                 "one job share it"},
    "error": {"type": "string", "description": "otherwise: that route's error"},
    "operation": {"type": "string"}, "field": {"type": "string"}},
    required=["executionId", "status", "taskId", "jobId"])

SCHEMAS: dict[str, Any] = {
    "ExecutionList": _object({"items": {"type": "array", "items": LISTED_EXECUTION}, **PAGINATION,
                              "totalCapped": TOTAL_CAPPED}),
    "RetryExecutions": _object({
        "executions": {"type": "array", "minItems": 1, "maxItems": MAX_RETRY_IDS,
                       "items": {"type": "string", "format": "uuid"},
                       "description": "execution ids, of any tasks and jobs: each one's job is retried once"},
        "task": {"type": ["string", "null"], "pattern": _PREFIX_PATTERN,
                 "description": "a task id prefix: an id of an execution of a task whose id does not start with it "
                                "refuses the request (400 naming it), and nothing is retried"}},
        required=["executions"], additionalProperties=True),
    "ExecutionsRetried": _object({"results": {"type": "array", "items": RETRY_RESULT}}),
}


def paths() -> dict[str, Any]:
    retry = _operation("retry_executions", f"retry the jobs of 1 to {MAX_RETRY_IDS} executions, each job once, "
                       "answering each id as the job's retry route would", _json("ExecutionsRetried"),
                       ("400", "404", "409", "413"), [IDEMPOTENCY_KEY])
    retry["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref("RetryExecutions")}}}
    return {
        "/executions": {"get": _operation(
            "list_executions", "executions across tasks, newest first by when each entered its status; pages "
            f"reach the newest {MAX_LISTED:,} (past them: 400)", _json("ExecutionList"), ("400", "404"),
            [STATUS, SINCE, TASK, PAGE])},
        "/executions/retry": {"post": retry},
    }
