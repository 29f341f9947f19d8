"""The ECS JSON protocol as the local Fargate speaks it: its errors and HTTP framing, and the task definitions it keeps."""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from .ecs_tasks import ecs_arn
from .gateway import OriginPolicy

log = logging.getLogger(__name__)

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
CLIENT_ERROR = "ClientException"
INVALID_PARAMETER = "InvalidParameterException"

Operation = Callable[[dict[str, Any]], dict[str, Any]]


class ApiError(Exception):
    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields  # more members of the error's body, as ECS sends (resourceIds)


def request_key(request: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in request.items() if k != "clientToken"}, sort_keys=True)


def cluster_name(ref: str | None) -> str:
    if not ref:
        return "default"
    return ref.rsplit("/", 1)[-1] if ref.startswith("arn:") else ref


class Api(Protocol):
    policy: OriginPolicy

    def dispatch(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]: ...


def answer(operations: dict[str, Operation], target: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """The status and body of the answer to one request for `target`."""
    operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target
    try:
        handler = operations.get(operation)
        if handler is None:
            raise ApiError(INVALID_PARAMETER,
                           f"The operation {operation or '(none)'} is not supported by the local Fargate.")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(INVALID_PARAMETER, "The request body is not valid JSON.") from None
        if not isinstance(request, dict):
            raise ApiError(INVALID_PARAMETER, "The request body must be a JSON object.")
        return 200, handler(request)
    except ApiError as error:
        return 400, {"__type": error.code, "message": error.message, **error.fields}
    except Exception as error:  # a bug here must answer, not kill the connection
        log.exception("local Fargate failed on %s", operation)
        return 500, {"__type": "ServerException", "message": f"{type(error).__name__}: {error}"}


class Handler(BaseHTTPRequestHandler):
    server_version = "fastlane-local-fargate"
    disable_nagle_algorithm = True  # headers and body go in two sends: no 40 ms wait between them
    protocol_version = "HTTP/1.1"
    api: Api

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""  # read even when refused: the connection is kept
        refusal = self.api.policy.refusal({name.lower(): value for name, value in self.headers.items()})
        if refusal is not None:
            status, payload = 403, {"__type": "AccessDeniedException", "message": refusal}
        else:
            status, payload = self.api.dispatch(self.headers.get("X-Amz-Target", ""), body)
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class TaskDefinitions:
    """RegisterTaskDefinition, DescribeTaskDefinition and DeregisterTaskDefinition, and the
    definition a RunTask names."""

    def __init__(self, region: str, account: str) -> None:
        self.region, self.account = region, account
        self._lock = threading.Lock()
        self._families: dict[str, list[dict[str, Any]]] = {}

    def register(self, request: dict[str, Any]) -> dict[str, Any]:
        family = request.get("family")
        containers = request.get("containerDefinitions")
        if not family or not isinstance(family, str):
            raise ApiError(CLIENT_ERROR, "Family must be specified.")
        if not containers or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in containers):
            raise ApiError(CLIENT_ERROR, "Container definitions must each have a name and an image.")
        with self._lock:
            revisions = self._families.setdefault(family, [])
            revision = len(revisions) + 1
            definition = {
                "taskDefinitionArn": ecs_arn(self.region, self.account, f"task-definition/{family}:{revision}"),
                "family": family,
                "revision": revision,
                "status": "ACTIVE",
                "containerDefinitions": containers,
                "networkMode": request.get("networkMode", "awsvpc"),
                "requiresCompatibilities": request.get("requiresCompatibilities", ["FARGATE"]),
                "compatibilities": ["EC2", "FARGATE"],
                "registeredAt": time.time(),
            }
            for key in ("cpu", "memory", "executionRoleArn", "taskRoleArn"):
                if request.get(key) is not None:
                    definition[key] = request[key]
            revisions.append(definition)
        return {"taskDefinition": definition, "tags": request.get("tags", [])}

    def find(self, ref: Any) -> dict[str, Any] | None:
        if not isinstance(ref, str) or not ref:
            return None
        name = ref.split(":task-definition/", 1)[1] if ref.startswith("arn:") and ":task-definition/" in ref else ref
        family, _, revision = name.partition(":")
        with self._lock:
            revisions = self._families.get(family, [])
            if revision:
                number = int(revision) if revision.isdigit() else 0
                return revisions[number - 1] if 1 <= number <= len(revisions) else None
            active = [d for d in revisions if d["status"] == "ACTIVE"]
            return active[-1] if active else None

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        definition = self.find(request.get("taskDefinition"))
        if definition is None:
            raise ApiError(CLIENT_ERROR, "Unable to describe task definition.")
        return {"taskDefinition": definition, "tags": []}

    def deregister(self, request: dict[str, Any]) -> dict[str, Any]:
        ref = request.get("taskDefinition")
        if not isinstance(ref, str) or ":" not in ref.rsplit("/", 1)[-1]:
            raise ApiError(CLIENT_ERROR, "A task definition revision must be given (family:revision or ARN).")
        definition = self.find(ref)
        if definition is None:
            raise ApiError(CLIENT_ERROR, "The specified task definition does not exist.")
        with self._lock:
            definition["status"] = "INACTIVE"
        return {"taskDefinition": definition}
