"""Notifications of one execution reach receivers in lifecycle order, and an ending whose
announcement died with its function is announced by the reconciler. On the local
backend's stores, with the sender and the engine built by hand around them."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from chalicelib.config import Settings
from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.messages import WEBHOOK, Launch, Notification
from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.model import Hook, JobSpec
from chalicelib.domain.webhooks import HookResult
from chalicelib.services.engine import build_engine
from chalicelib.services.notify import START_ORDER_WAIT, NotificationPublisher, NotificationSender
from infra.local.sqlite.db import Database
from infra.local.sqlite.stores import Stores, open_stores
from tests.contract.support import FakeClock, a_job, an_execution

SETTINGS = Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e", jobs_queue_url="q",
                    notify_queue_url="n")
START, END = Hook(url="https://hooks.example/start", retries=1), Hook(url="https://hooks.example/end")


class Queue:
    """A notify queue that records what is sent, and can be made to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[Notification, float]] = []
        self.failures = 0

    def send(self, message: Notification, delay_seconds: float = 0) -> str:
        self.sent.append((message, delay_seconds))
        return str(len(self.sent))

    def send_all(self, messages) -> None:
        if self.failures:
            self.failures -= 1
            raise DependencyDown("SQS: unreachable")
        self.sent += [(m, 0.0) for m in messages]


class Poster:
    def __init__(self) -> None:
        self.posted: list[str] = []

    def __call__(self, url, body, headers, *, timeout, allow_private=False) -> HookResult:
        self.posted.append(url)
        return HookResult(status_code=200)


@pytest.fixture
def stores(tmp_path: Path):
    db = Database(str(tmp_path / "state.db"))
    yield open_stores(db)
    db.close()


def ended_with_hooks(stores: Stores, clock: FakeClock):
    spec = JobSpec(image="ubuntu", command="true", webhooks={"starts": [START], "finishes": [END]})
    job = a_job(spec=spec)
    execution = an_execution(job, started_at=clock() - 10)
    job, first = stores.jobs.save_new_job(job, execution)
    assert first is not None
    moved = stores.executions.transition(first, S.DONE, finished_at=clock(), exit_code=0)
    assert moved is not None
    return job, moved[0]


def test_an_ending_waits_for_a_starts_webhook_still_to_be_retried(stores: Stores) -> None:
    clock, queue, poster = FakeClock(1_800_000_000.0), Queue(), Poster()
    sender = NotificationSender(stores.jobs, stores.executions, queue, stores.deliveries, None, SETTINGS, poster,
                                clock=clock)
    job, execution = ended_with_hooks(stores, clock)
    starts_key = f"{execution.execution_id}/{WEBHOOK}/starts/0/1"
    stores.executions.record_notification(job.job_id, execution.execution_id, {
        "kind": WEBHOOK, "event": "starts", "ok": False, "retryIn": 5, "delivery": starts_key})
    finishes = Notification(kind=WEBHOOK, event="finishes", task_id=job.task_id, job_id=job.job_id,
                            execution_id=execution.execution_id, status="done", hook=END)

    sender.handle(finishes)
    assert poster.posted == [] and [m.event for m, _ in queue.sent] == ["finishes"]  # sent back to wait

    stores.executions.record_notification(job.job_id, execution.execution_id, {
        "kind": WEBHOOK, "event": "starts", "ok": True, "retryIn": None,
        "delivery": starts_key.replace("/1", "/2")})
    sender.handle(finishes)
    assert poster.posted == [END.url]


def test_an_ending_does_not_wait_for_ever_for_a_starts_that_never_comes(stores: Stores) -> None:
    clock, queue, poster = FakeClock(1_800_000_000.0), Queue(), Poster()
    sender = NotificationSender(stores.jobs, stores.executions, queue, stores.deliveries, None, SETTINGS, poster,
                                clock=clock)
    job, execution = ended_with_hooks(stores, clock)
    clock.advance(START_ORDER_WAIT + 1)
    sender.handle(Notification(kind=WEBHOOK, event="finishes", task_id=job.task_id, job_id=job.job_id,
                               execution_id=execution.execution_id, status="done", hook=END))
    assert poster.posted == [END.url]


def test_an_expiry_whose_announcement_failed_is_announced_by_the_reconciler(stores: Stores) -> None:
    clock, queue = FakeClock(1_800_000_000.0), Queue()
    spec = JobSpec(image="ubuntu", command="true", expiration=clock() - 1, webhooks={"finishes": [END]})
    job = a_job(spec=spec)
    job, first = stores.jobs.save_new_job(job, replace(an_execution(job), expiration=spec.expiration, notifies=True))
    assert first is not None

    class Jobs:  # the launch queue is not what this test is about
        def send(self, message, delay_seconds: float = 0) -> str:
            return "id"

    engine = build_engine(stores.jobs, stores.executions, stores.pools, stores.statistics, Jobs(), None,
                         SETTINGS, clock=clock, notifier=NotificationPublisher(queue, SETTINGS))
    queue.failures = 1
    with pytest.raises(DependencyDown):
        engine.dispatcher.dispatch(Launch.of(first))  # expired, then died publishing its ending
    assert stores.executions.get_execution(job.job_id, first.execution_id).status is S.EXPIRED
    assert queue.sent == []

    engine.dispatcher.dispatch(Launch.of(first))  # the message again finds it ended
    assert queue.sent == []
    engine.reconciler.reconcile()
    assert [(m.event, m.status) for m, _ in queue.sent] == [("finishes", "expired")]
    engine.reconciler.reconcile()  # and again: announced once
    assert len(queue.sent) == 1


def test_an_ending_whose_function_died_before_announcing_it_is_announced_by_the_reconciler(stores: Stores) -> None:
    """A stop (here, of a cron run replaced by the next tick) ended the execution and the
    function died before publishing: no message about it comes again; the reconciler announces."""
    clock, queue = FakeClock(1_800_000_000.0), Queue()
    spec = JobSpec(image="ubuntu", command="true", webhooks={"finishes": [END]})
    job = a_job(spec=spec)
    job, first = stores.jobs.save_new_job(job, replace(an_execution(job), notifies=True))
    assert first is not None

    class Died(BaseException):
        pass

    publisher = NotificationPublisher(queue, SETTINGS)
    engine = build_engine(stores.jobs, stores.executions, stores.pools, stores.statistics, None, None,
                         SETTINGS, clock=clock, notifier=publisher)
    publish = publisher.publish

    def die(event, job, execution):
        raise Died()

    publisher.publish = die  # type: ignore[method-assign]
    with pytest.raises(Died):
        engine.ending.stop(first, reason="replaced by the next cron tick")
    publisher.publish = publish  # type: ignore[method-assign]
    assert queue.sent == []

    assert engine.reconciler.reconcile()["announced"] == 1
    assert [(m.event, m.status) for m, _ in queue.sent] == [("finishes", "stopped")]
    assert engine.reconciler.reconcile()["announced"] == 0 and len(queue.sent) == 1


def test_a_start_seen_only_at_the_end_is_announced_by_the_reconciler_when_publishing_it_failed(
        stores: Stores) -> None:
    """A job with a `starts` webhook only, whose RUNNING event was lost: the STOPPED state is what
    says it started, its ending owes that `starts`, and a failed publish leaves it to the
    reconciler (it once left the ending owing nothing, and the `starts` was never sent)."""
    from chalicelib.domain.ecs import TaskState

    clock, queue = FakeClock(1_800_000_000.0), Queue()
    job = a_job(spec=JobSpec(image="ubuntu", command="true", webhooks={"starts": [START]}))
    job, first = stores.jobs.save_new_job(job, replace(an_execution(job), envs={}, notifies=True, job_retries=0))
    assert first is not None
    moved = stores.executions.transition(first, S.PULLING, task_arn="arn:aws:ecs:r:1:task/c/t", launched_at=clock())
    assert moved is not None
    stopped = TaskState(arn="arn:aws:ecs:r:1:task/c/t", last_status="STOPPED", exit_code=0,
                        started_at=clock() - 5, stopped_at=clock())

    class Ecs:  # the task is gone as it said
        def describe(self, arns):
            return {arn: stopped for arn in arns}

    engine = build_engine(stores.jobs, stores.executions, stores.pools, stores.statistics, None, Ecs(),
                         SETTINGS, clock=clock, notifier=NotificationPublisher(queue, SETTINGS))
    queue.failures = 1
    with pytest.raises(DependencyDown):
        engine.monitor.apply(moved[0], stopped)
    ended = stores.executions.get_execution(job.job_id, first.execution_id)
    assert ended.status is S.DONE and ended.announcing and queue.sent == []

    assert engine.reconciler.reconcile()["announced"] == 1
    assert [(m.event, m.status) for m, _ in queue.sent] == [("starts", "done")]
    again = stores.executions.get_execution(job.job_id, first.execution_id)
    assert not again.announcing and again.notified == frozenset({"started"})
    assert engine.reconciler.reconcile()["announced"] == 0 and len(queue.sent) == 1
