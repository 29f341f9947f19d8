"""The local stand-in for ECS Fargate: an HTTP server that speaks the ECS JSON API and runs each
task as a local process (or through the docker CLI when an engine is given), shipping its output
to CloudWatch Logs and its state changes to SQS in the envelope an EventBridge rule delivers.

The app's ECS client is pointed at it with AWS_ENDPOINT_URL_ECS, so the app code is the same as
in AWS. Only what the app uses is implemented; unknown operations are a 400 naming them. It
serves the runtime's aws backend; the local backend runs processes through infra/local/runner.py
without an ECS API. Both run their processes through infra/local/processes.py.

RunTask runs any command on the developer's machine, so the port answers its own clients only,
as the local API Gateway does: a request a browser marks as cross-site, or one naming a foreign
Host (DNS rebinding), is refused with 403 before it is read as an operation.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from .commands import CannotStart, Sandbox
from .containers import Containers, join, live, running
from .ecs_api import INVALID_PARAMETER, ApiError, Handler, TaskDefinitions, answer, cluster_name, request_key
from .ecs_tasks import ACCOUNT, REGION, EcsTask, ecs_arn
from .gateway import OriginPolicy
from .output import CloudWatchStreams, OutputShipper
from .processes import ProcessRun

log = logging.getLogger(__name__)


RETENTION_SECONDS = 3600.0  # ECS keeps stopped tasks describable for about an hour
MAX_TASKS = 10_000

FLUSH_SECONDS = 0.2  # as the awslogs driver batches: CloudWatch calls are counted and throttled
SHUTDOWN_JOIN_SECONDS = 5.0
SHUT_DOWN = "Local Fargate stopped"  # the stopped reason of the tasks it ran


@dataclass(kw_only=True)
class _Task(EcsTask):
    """A task the API started: its ECS state, and what RunTask asked for."""

    id: str
    cluster: str
    definition: dict[str, Any]
    container: dict[str, Any]
    argv: list[str]  # entryPoint + command; empty when neither is given
    env: dict[str, str]  # the definition's environment with the overrides applied
    client_token: str | None
    request: str  # the RunTask request but its client token, canonical: a token reused with another is refused
    process: ProcessRun | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None


class LocalFargate:
    """ECS Fargate on this machine: RegisterTaskDefinition, DescribeTaskDefinition, RunTask,
    StopTask, DescribeTasks and ListTasks over the ECS JSON protocol."""

    def __init__(
        self,
        *,
        sqs_client: Any,
        logs_client: Any,
        events_queue_url: str,
        log_group: str,
        region: str = REGION,
        account: str = ACCOUNT,
        host: str = "127.0.0.1",
        port: int = 0,
        stop_grace_seconds: float = 2.0,
        engine: str | None = None,
        sandbox: Sandbox | None = None,
        allowed_hosts: str | None = None,
    ) -> None:
        self.sqs = sqs_client
        self.logs = logs_client
        self.events_queue_url = events_queue_url
        self.log_group = log_group
        self.region = region
        self.account = account
        self.stop_grace_seconds = stop_grace_seconds
        self._containers = Containers(engine, sandbox)
        self.engine = engine
        self.sandbox = self._containers.sandbox
        self._lock = threading.Lock()
        self._definitions = TaskDefinitions(region, account)
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._tokens: dict[tuple[str, str], str] = {}
        self._stopped: OrderedDict[str, float] = OrderedDict()  # task id -> when, oldest first
        self._closing = False
        handler = type("Handler", (Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.policy = OriginPolicy(host, self.port, allowed_hosts)
        # A short poll interval makes stop() quick; the server is idle otherwise.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="local-fargate", daemon=True)
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "RegisterTaskDefinition": self._definitions.register,
            "DescribeTaskDefinition": self._definitions.describe,
            "DeregisterTaskDefinition": self._definitions.deregister,
            "RunTask": self._run_task,
            "StopTask": self._stop_task,
            "DescribeTasks": self._describe_tasks,
            "ListTasks": self._list_tasks,
        }

    @property
    def isolation(self) -> str:
        """How jobs are isolated from the host, as /status says it."""
        return self._containers.isolation

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        # Bound to every address, it is reached on loopback: a Host of 0.0.0.0 names no one.
        host = str(self._httpd.server_address[0])
        return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{self.port}"

    def start(self) -> None:
        try:
            self.logs.create_log_group(logGroupName=self.log_group)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass
        self._thread.start()

    def stop(self) -> None:
        """Kill every task still running, stop serving, and wait a little for the tasks' last
        events (they are lost if the queue is already gone)."""
        self._closing = True
        with self._lock:
            tasks = list(self._tasks.values())
        for task in tasks:
            self._request_stop(task, "TerminationNotice", SHUT_DOWN, grace=None)
            if task.process is not None:
                self._containers.kill(task.id, task.process)
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        join([task.thread for task in tasks], SHUTDOWN_JOIN_SECONDS)

    def running_count(self) -> int:
        with self._lock:
            return running(task.process for task in self._tasks.values())

    # -- the API -------------------------------------------------------------------------------

    def dispatch(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        return answer(self._operations, target, body)

    def _run_task(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = cluster_name(request.get("cluster"))
        if request.get("count", 1) != 1:
            raise ApiError(INVALID_PARAMETER, "The local Fargate runs one task per RunTask (count must be 1).")
        token = request.get("clientToken") or None
        if token is not None:
            existing = self._task_for_token(cluster, token)
            if existing is not None:
                return self._same_request(existing, request)
        task = self._new_task(cluster, request)
        with self._lock:
            if token is not None and (cluster, token) in self._tokens:
                # Another request with the same token won the race: answer with its task.
                existing = self._tasks[self._tokens[(cluster, token)]]
                task = None
            else:
                self._prune(time.time(), room=1)
                self._tasks[task.id] = task
                if token is not None:
                    self._tokens[(cluster, token)] = task.id
        if task is None:
            return self._same_request(existing, request)
        # PENDING goes out before the supervisor starts, so the events of a task are in order.
        with task.lock:
            pending = task.state_change(self.account, self.region, time.time())
            answer = task.describe()
        self._send_event(task, pending)
        task.thread = threading.Thread(target=self._supervise, args=(task,), name=f"task-{task.id[:8]}", daemon=True)
        task.thread.start()
        return {"tasks": [answer], "failures": []}

    def _same_request(self, existing: _Task, request: dict[str, Any]) -> dict[str, Any]:
        """A client token already used in the cluster: ECS answers the task it started when the
        request is the same, and refuses another, naming the task (`resourceIds`)."""
        if request_key(request) != existing.request:
            raise ApiError("ConflictException", "The clientToken is already in use with different RunTask "
                           "parameters.", resourceIds=[existing.arn])
        return {"tasks": [self._snapshot(existing)], "failures": []}

    def _task_for_token(self, cluster: str, token: str) -> _Task | None:
        with self._lock:
            task_id = self._tokens.get((cluster, token))
            return self._tasks.get(task_id) if task_id else None

    def _new_task(self, cluster: str, request: dict[str, Any]) -> _Task:
        definition = self._definitions.find(request.get("taskDefinition"))
        if definition is None:
            raise ApiError(INVALID_PARAMETER, "TaskDefinition not found.")
        # One container per task: the first of the definition, the one that is reported.
        container = definition["containerDefinitions"][0]
        overrides = dict(request.get("overrides") or {})
        overrides.setdefault("containerOverrides", [])
        override: dict[str, Any] = {}
        names = [c["name"] for c in definition["containerDefinitions"]]
        for entry in overrides["containerOverrides"]:
            if entry.get("name") not in names:
                raise ApiError(INVALID_PARAMETER, f"Override for container named {entry.get('name')} "
                                                  "is not a container in the TaskDefinition.")
            if entry.get("name") == container["name"]:
                override = entry
        command = override.get("command") or container.get("command") or []
        env: dict[str, str] = {}
        for entry in [*(container.get("environment") or []), *(override.get("environment") or [])]:
            if entry.get("name"):
                env[str(entry["name"])] = str(entry.get("value", ""))
        task_id = uuid.uuid4().hex
        now = time.time()
        described: dict[str, Any] = {"overrides": overrides, "tags": list(request.get("tags") or [])}
        for key in ("cpu", "memory"):
            value = overrides.get(key) or definition.get(key)
            if value is not None:
                described[key] = value
        return _Task(
            id=task_id,
            arn=ecs_arn(self.region, self.account, f"task/{cluster}/{task_id}"),
            cluster=cluster,
            cluster_arn=ecs_arn(self.region, self.account, f"cluster/{cluster}"),
            definition_arn=definition["taskDefinitionArn"],
            group=request.get("group") or f"family:{definition['family']}",
            definition=definition,
            container=container,
            container_name=container["name"],
            image=container.get("image", ""),
            container_arn=ecs_arn(self.region, self.account, f"container/{cluster}/{task_id}/{uuid.uuid4()}"),
            argv=[str(a) for a in (container.get("entryPoint") or [])] + [str(a) for a in command],
            env=env,
            described=described,
            started_by=request.get("startedBy"),
            client_token=request.get("clientToken"),
            request=request_key(request),
            created_at=now,
            updated_at=now,
        )

    def _find_task(self, cluster: str, ref: Any) -> _Task | None:
        if not isinstance(ref, str) or not ref:
            return None
        with self._lock:
            task = self._tasks.get(ref.rsplit("/", 1)[-1])
        if task is None or task.cluster != cluster or (ref.startswith("arn:") and ref != task.arn):
            return None
        return task

    def _stop_task(self, request: dict[str, Any]) -> dict[str, Any]:
        task = self._find_task(cluster_name(request.get("cluster")), request.get("task"))
        if task is None:
            raise ApiError(INVALID_PARAMETER, "The referenced task was not found.")
        reason = request.get("reason") or "Task stopped by user"
        self._request_stop(task, "UserInitiated", reason, grace=self.stop_grace_seconds)
        return {"task": self._snapshot(task)}

    def _describe_tasks(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = cluster_name(request.get("cluster"))
        refs = request.get("tasks") or []
        if not isinstance(refs, list) or len(refs) > 100:
            raise ApiError(INVALID_PARAMETER, "Tasks must be a list of at most 100 task ARNs or ids.")
        tasks, failures = [], []
        for ref in refs:
            task = self._find_task(cluster, ref)
            if task is None:
                failures.append({"arn": ref, "reason": "MISSING"})
            else:
                tasks.append(self._snapshot(task))
        return {"tasks": tasks, "failures": failures}

    def _list_tasks(self, request: dict[str, Any]) -> dict[str, Any]:
        cluster = cluster_name(request.get("cluster"))
        desired = request.get("desiredStatus") or "RUNNING"
        if desired not in ("RUNNING", "PENDING", "STOPPED"):
            raise ApiError(INVALID_PARAMETER, "desiredStatus must be RUNNING, PENDING or STOPPED.")
        started_by, family = request.get("startedBy"), request.get("family")
        with self._lock:
            tasks = list(self._tasks.values())
        arns = [
            task.arn for task in tasks
            if task.cluster == cluster
            and (task.desired_status == desired if desired != "PENDING" else task.last_status == "PENDING")
            and (started_by is None or task.started_by == started_by)
            and (family is None or task.definition["family"] == family)
        ]
        size = int(request.get("maxResults") or 100)
        if not 1 <= size <= 100:
            raise ApiError(INVALID_PARAMETER, "maxResults must be between 1 and 100.")
        token = request.get("nextToken")
        start = int(token) if isinstance(token, str) and token.isdigit() else 0
        answer: dict[str, Any] = {"taskArns": arns[start:start + size]}
        if start + size < len(arns):
            answer["nextToken"] = str(start + size)
        return answer

    def _snapshot(self, task: _Task) -> dict[str, Any]:
        with task.lock:
            return task.describe()

    def _prune(self, now: float, room: int = 0) -> None:
        """Forget the oldest stopped tasks: those stopped over an hour ago, and any beyond the
        bound (with `room` for tasks about to be added). Call with the lock held."""
        while self._stopped:
            task_id, stopped_at = next(iter(self._stopped.items()))
            if now - stopped_at < RETENTION_SECONDS and len(self._tasks) + room <= MAX_TASKS:
                break
            del self._stopped[task_id]
            task = self._tasks.pop(task_id, None)
            if task is not None and task.client_token:
                self._tokens.pop((task.cluster, task.client_token), None)

    # -- running tasks -------------------------------------------------------------------------

    def _request_stop(self, task: _Task, code: str, reason: str, grace: float | None) -> None:
        """Mark the task stopping and, unless grace is None (the caller kills it), end its
        process in the background: TERM, then KILL after the grace."""
        with task.lock:
            if not task.ask_stop(code, reason, time.time()):
                return  # already stopping, failed, or stopped: nothing changes
            process = live(task.process)
        # Not started yet: the supervisor sees desiredStatus and does not start it.
        if process is not None and grace is not None:
            self._containers.terminate(task.id, process, grace)

    def _supervise(self, task: _Task) -> None:
        """Start the task, ship its output while it runs, and report how it ended. Runs in the
        task's own thread; never raises."""
        exit_code, error = self._containers.supervise(task.id, lambda home: self._launch(task, home),
                                                      lambda: task.process)
        with task.lock:
            if error is None:
                task.exit_code = exit_code
            elif task.process is None and task.stop_code is None:
                task.failed_to_start(f"CannotStartContainerError: {error}", time.time())
        self._finish(task)

    def _launch(self, task: _Task, home: str | None) -> tuple[ProcessRun, OutputShipper] | None:
        with task.lock:
            if self._closing:
                task.ask_stop("TerminationNotice", SHUT_DOWN, time.time())
            if task.desired_status == "STOPPED":
                return None  # stopped before it started
            try:
                entry_point = [str(a) for a in task.container.get("entryPoint") or []]
                command = self._containers.command(task.id, task.image, task.argv, task.env, home, entry_point)
                process = ProcessRun(command)
            except CannotStart as error:
                task.failed_to_start(error.reason, time.time())
                return None
            task.process = process
        # The streams exist from the start, as with awslogs, so an empty stderr can be read.
        streams = CloudWatchStreams(self.logs, self.log_group, task.id)
        streams.create_streams()
        with task.lock:
            task.running(time.time())
            running = task.state_change(self.account, self.region, time.time())
        self._send_event(task, running)
        return process, OutputShipper(streams.put, streams.names, FLUSH_SECONDS)

    def _finish(self, task: _Task) -> None:
        now = time.time()
        with task.lock:
            task.stopped(now, task.exit_code)
            stopped = task.state_change(self.account, self.region, now)
        self._send_event(task, stopped)
        with self._lock:
            self._stopped[task.id] = now
            self._prune(now)

    def _send_event(self, task: _Task, event: dict[str, Any]) -> None:
        """Put the event on the queue an EventBridge rule on `aws.ecs` / `ECS Task State Change` targets."""
        extra: dict[str, str] = {}
        if self.events_queue_url.endswith(".fifo"):
            extra = {"MessageGroupId": task.id, "MessageDeduplicationId": event["id"]}
        try:
            self.sqs.send_message(QueueUrl=self.events_queue_url, MessageBody=json.dumps(event), **extra)
        except Exception:
            log.exception("cannot send the %s event of task %s", event["detail"].get("lastStatus"), task.id)
