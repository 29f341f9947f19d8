"""The reference: the same trivial workload through RQ on a local Redis, one worker per core.

    python -m bench.rq_reference worker REDIS_URL QUEUE     (a worker, started by the bench)
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .processes import Started, spawn, wait_until

QUEUE = "bench"


def run_command(argv: list[str]) -> int:
    """The RQ job: run the command as the local runtime does (a process, no shell)."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False).returncode


def _epoch(moment: datetime | None) -> float:
    if moment is None:
        return float("nan")
    # RQ stores UTC; older releases hand back naive datetimes.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass
class RqCluster:
    url: str
    workers: list[Started]

    def connection(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(grace=10)


def start_workers(url: str, count: int, log_dir: Path) -> RqCluster:
    from rq import Worker

    cluster = RqCluster(url, [])
    try:
        for n in range(count):
            cluster.workers.append(spawn(f"rq-worker-{n}", [sys.executable, "-m", "bench.rq_reference", "worker",
                                                             url, QUEUE], log_dir))
        connection = cluster.connection()

        def registered() -> bool:
            for worker in cluster.workers:
                if not worker.alive():
                    raise RuntimeError(f"an RQ worker exited: {worker.tail()}")
            return Worker.count(connection=connection) >= count

        wait_until(registered, timeout=30, interval=0.1, what="the RQ workers")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def latency(cluster: RqCluster, samples: int, streams: int = 2) -> dict[str, list[float]]:
    """enqueued_at -> started_at, and ended_at -> the moment a client first sees `finished`
    (polling as quickly as the bench polls the service), in ms; `streams` clients at a time."""
    from rq import Queue
    from rq.job import JobStatus

    from .control_plane import POLL_SECONDS, run_streams

    to_running: list[float] = []
    to_visible: list[float] = []
    lock = threading.Lock()

    def stream(count: int) -> None:
        queue = Queue(QUEUE, connection=cluster.connection())
        for _ in range(count):
            job = queue.enqueue(run_command, ["true"])
            while True:
                status = job.get_status(refresh=True)
                seen = time.time()
                if status in (JobStatus.FINISHED, JobStatus.FAILED):
                    break
                time.sleep(POLL_SECONDS)
            job.refresh()
            with lock:
                to_running.append((_epoch(job.started_at) - _epoch(job.enqueued_at)) * 1000)
                to_visible.append((seen - _epoch(job.ended_at)) * 1000)

    run_streams(stream, samples, streams)
    return {"acceptedToRunningMs": to_running, "exitToDoneVisibleMs": to_visible}


def throughput(cluster: RqCluster, jobs: int, clients: int, timeout: float = 240) -> dict[str, float]:
    """`jobs` enqueued by `clients` threads (a connection each); rates over the whole batch."""
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    connection = cluster.connection()
    queue = Queue(QUEUE, connection=connection)
    finished = FinishedJobRegistry(queue=queue)
    failed = FailedJobRegistry(queue=queue)
    base = finished.count + failed.count
    shares = [jobs // clients + (1 if n < jobs % clients else 0) for n in range(clients)]
    errors: list[BaseException] = []

    def client(count: int) -> None:
        try:
            own = Queue(QUEUE, connection=cluster.connection())
            for _ in range(count):
                own.enqueue(run_command, ["true"])
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    enqueued = time.monotonic()
    if errors:
        raise errors[0]
    wait_until(lambda: finished.count + failed.count - base >= jobs, timeout=timeout, interval=0.05,
               what="the RQ jobs to finish")
    done = time.monotonic()
    return {"jobs": jobs, "enqueueSeconds": enqueued - started, "completeSeconds": done - started,
            "enqueuesPerSecond": jobs / (enqueued - started), "jobsPerSecond": jobs / (done - started),
            "failed": failed.count}


def _worker(url: str, queue_name: str) -> int:
    import redis
    from rq import Queue, Worker

    connection = redis.Redis.from_url(url)
    worker = Worker([Queue(queue_name, connection=connection)], connection=connection)
    worker.work(logging_level="WARNING")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        sys.exit(_worker(sys.argv[2], sys.argv[3]))
    sys.exit(f"usage: python -m bench.rq_reference worker REDIS_URL QUEUE (got {sys.argv[1:]})")
