"""The peer of figure 3a: what a user of the original fastlane runs to enqueue a job. A Flask app
that parses the job (a JSON body with `image` and `command`, both required, 400 otherwise, as the
original answers) and enqueues it with RQ on Redis, served by gunicorn with one sync worker per
core, while RQ workers run the jobs (the RQ reference's workers and job function).

    python -m gunicorn -w <cores> -k sync -b 127.0.0.1:<port> bench.peer:app

with PEER_REDIS_URL naming the Redis. The original also wrote the task, job and execution to
MongoDB before enqueueing; the peer does not (the issue's peer is Flask and RQ on Redis), so it
does less per post than the original did.
"""
from __future__ import annotations

import os
import shlex
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, make_response, request

from .processes import HOST, Started, free_port, spawn, wait_healthy, wait_until
from .rq_reference import QUEUE, RqCluster, run_command

REDIS_URL_VARIABLE = "PEER_REDIS_URL"
SCHEDULES = ("startAt", "startIn", "cron")

app = Flask(__name__)
_queue: Any = None
_queue_lock = threading.Lock()


def _jobs_queue() -> Any:
    """The RQ queue, made on first use in each gunicorn worker (after the fork), one connection pool each."""
    global _queue
    with _queue_lock:
        if _queue is None:
            import redis
            from rq import Queue

            _queue = Queue(QUEUE, connection=redis.Redis.from_url(os.environ[REDIS_URL_VARIABLE]))
        return _queue


@app.get("/healthcheck")
def healthcheck() -> Any:
    return "WORKING"


@app.post("/tasks/<task_id>", strict_slashes=False)
def enqueue(task_id: str) -> Any:
    details = request.get_json(silent=True)
    if not isinstance(details, dict):
        return make_response("Failed to enqueue task because JSON body could not be parsed.", 400)
    image, command = details.get("image"), details.get("command")
    if image is None or command is None:
        return make_response("image and command must be filled in the request.", 400)
    if not isinstance(image, str) or not isinstance(command, str) or not command.strip():
        return make_response("image and command must be strings, command not empty.", 400)
    if sum(details.get(name) is not None for name in SCHEDULES) > 1:
        return make_response("Only ONE of 'startAt', 'startIn' and 'cron' should be in the request.", 400)
    if any(details.get(name) is not None for name in SCHEDULES):
        return make_response("the bench's peer enqueues immediate jobs only.", 400)
    job_id, execution_id = str(uuid.uuid4()), str(uuid.uuid4())
    queued = _jobs_queue().enqueue(run_command, shlex.split(command), job_id=execution_id)
    return jsonify({"taskId": task_id, "jobId": job_id, "executionId": execution_id, "queueJobId": queued.id})


# the bench's side ---------------------------------------------------------------------------------


def start(redis_url: str, workers: int, log_dir: Path) -> tuple[Started, str]:
    """gunicorn serving `app` on a free loopback port, `workers` sync workers; stopped by its pid."""
    port = free_port()
    env = {**os.environ, REDIS_URL_VARIABLE: redis_url, "PYTHONUNBUFFERED": "1"}
    started = spawn("peer-gunicorn", [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "sync",
                                      "-b", f"{HOST}:{port}", "--graceful-timeout", "5", "--log-level", "warning",
                                      "bench.peer:app"], log_dir, env)
    base = f"http://{HOST}:{port}"
    wait_healthy(started, base, "the peer (gunicorn)", timeout=30, interval=0.1)
    return started, base


def throughput(cluster: RqCluster, base: str, jobs: int, clients: int, timeout: float = 240) -> dict[str, Any]:
    """`jobs` trivial jobs posted to the peer by `clients` threads, with the loop that posts them to
    the service (bench.control_plane.post_batch), while the cluster's workers run them; the enqueue
    rate over the posts, the completion rate once every accepted job has ended."""
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    from .control_plane import post_batch

    queue = Queue(QUEUE, connection=cluster.connection())
    finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
    base_count = finished.count + failed.count
    posted = post_batch(base, jobs, clients)
    accepted = len(posted.post_ms)
    wait_until(lambda: finished.count + failed.count - base_count >= accepted, timeout=timeout, interval=0.05,
               what="the peer's jobs to finish")
    done = time.monotonic()
    return {"jobs": jobs, "clients": clients, "accepted": accepted, "postErrors": posted.errors[:5],
            "postErrorCount": len(posted.errors), "enqueueSeconds": posted.seconds,
            "completeSeconds": done - posted.started, "enqueuesPerSecond": accepted / posted.seconds,
            "jobsPerSecond": accepted / (done - posted.started), "failed": failed.count, "postMs": posted.post_ms}
