"""Webhooks and e-mail when executions start and end: published by the engine on the notify
queue, delivered by the notify handler, on moto in process, to a receiver on 127.0.0.1."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import pytest

from chalicelib.adapters.webhooks import post
from chalicelib.domain.webhooks import signature_matches
from chalicelib.services.notify import MAIL_OFF
from infra.local.event_sources import deliver_once
from tests.component.engine_support import FakeRunner, install_engine, key_of, send_events, task_event
from tests.conftest import REGION
from tests.polling import wait_until
from tests.webhook_receiver import Receiver, Stalling

SECRET = "hook-s3cret"
BASE = "https://fastlane.example"
SENDER = "fastlane@example.com"


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def settings_env(aws, monkeypatch):
    """Notifications on, signed, allowed to reach 127.0.0.1, links from a public base URL."""
    monkeypatch.setenv("WEBHOOK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("WEBHOOK_BACKOFF_MIN", "0")
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    monkeypatch.delenv("MAIL_SENDER", raising=False)
    return monkeypatch


@pytest.fixture
def runner(settings_env):
    return _install(settings_env)


def _install(monkeypatch) -> FakeRunner:
    from chalicelib import wiring

    wiring.reset()
    runner = FakeRunner()
    engine = install_engine(monkeypatch, runner)
    engine.announcer.publisher = wiring.get_notifier()  # the engine as wired in AWS: with its notifier
    return runner


@pytest.fixture
def mail(settings_env):
    """E-mail on: a sender verified in SES."""
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SENDER)
    settings_env.setenv("MAIL_SENDER", SENDER)
    return _install(settings_env)


def _path(url: str) -> str:
    return urlsplit(url).path


def drive(sqs, aws, queue: str) -> int:
    import app as app_module

    url, handler = {"jobs": (aws["JOBS_QUEUE_URL"], app_module.dispatch_jobs),
                     "events": (aws["EVENTS_QUEUE_URL"], app_module.monitor_tasks),
                     "notify": (aws["NOTIFY_QUEUE_URL"], app_module.send_notifications)}[queue]
    total = 0
    while (count := deliver_once(sqs, url, handler)):
        total += count
    return total


def run(api, sqs, aws, runner, payload: dict, exit_code: int | None = 0, notify: bool = True) -> dict:
    """Enqueue a job, launch it, see it running and then stopped with `exit_code`, and deliver
    its notifications; the enqueue answer."""
    created = api.post("/tasks/t", payload).json
    drive(sqs, aws, "jobs")
    arn = runner.tasks[created["executionId"]]
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "RUNNING"))
    drive(sqs, aws, "events")
    if exit_code is not None:
        stopped = task_event(key_of(created), arn, "STOPPED", exit_code=exit_code)
        send_events(sqs, aws["EVENTS_QUEUE_URL"], stopped)
        drive(sqs, aws, "events")
    if notify:
        drive(sqs, aws, "notify")
    return created


def execution(api, created: dict) -> dict:
    return api.get(_path(created["executionUrl"])).json["execution"]


def hooks(receiver, **events) -> dict:
    return {event: [{"url": f"{receiver.url}/{path}"} if isinstance(path, str) else
                    {"url": f"{receiver.url}/{path[0]}", **path[1]} for path in paths]
            for event, paths in events.items()}


def sent_mail() -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages


# webhooks -------------------------------------------------------------------------------------------


def test_a_successful_execution_posts_starts_succeeds_and_finishes_once_each(api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "true", "metadata": {"user": "ana"},
               "envs": {"DB_PASSWORD": "hunter2", "MODE": "fast"},
               "webhooks": hooks(receiver, starts=["starts"], fails=["fails"], finishes=["finishes"],
                                 succeeds=[("ok", {"headers": {"Authorization": "Bearer t"}})])}
    created = run(api, sqs, aws, runner, payload, exit_code=0)
    assert sorted(r.path for r in receiver.received()) == ["/finishes", "/ok", "/starts"]
    ok = receiver.received("/ok")[0]
    assert ok.headers["Content-Type"] == "application/json"
    assert ok.headers["Authorization"] == "Bearer t"
    assert ok.headers["X-Fastlane-Event"] == "succeeds"
    assert signature_matches(SECRET, ok.body, ok.headers["X-Fastlane-Signature"])
    body = ok.json
    assert body["event"] == "succeeds"
    assert body["task"] == {"id": "t", "url": f"{BASE}/tasks/t"}
    assert body["job"]["id"] == created["jobId"] and body["job"]["url"] == created["jobUrl"]
    assert body["job"]["metadata"]["custom"] == {"user": "ana"}
    assert body["job"]["metadata"]["envs"] == {"DB_PASSWORD": "***", "MODE": "fast"}
    assert "webhooks" not in body["job"]["metadata"] and "notify" not in body["job"]["metadata"]
    assert (body["execution"]["executionId"], body["execution"]["status"], body["execution"]["exitCode"]) == (
        created["executionId"], "done", 0)
    assert body["execution"]["url"] == created["executionUrl"] and "notifications" not in body["execution"]
    recorded = execution(api, created)["notifications"]
    assert sorted((n["event"], n["statusCode"], n["ok"], n["attempt"]) for n in recorded) == [
        ("finishes", 200, True, 1), ("starts", 200, True, 1), ("succeeds", 200, True, 1)]
    assert all(n["kind"] == "webhook" and n["error"] is None and n["at"] for n in recorded)


def test_a_failed_execution_posts_fails_and_finishes(api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "false",
               "webhooks": hooks(receiver, succeeds=["ok"], fails=["fails"], finishes=["finishes"])}
    run(api, sqs, aws, runner, payload, exit_code=1)
    assert sorted(r.path for r in receiver.received()) == ["/fails", "/finishes"]
    fails = receiver.received("/fails")[0].json
    assert (fails["event"], fails["execution"]["status"], fails["execution"]["exitCode"]) == ("fails", "failed", 1)


def test_a_stopped_execution_posts_finishes_only(api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "sleep 60",
               "webhooks": hooks(receiver, succeeds=["ok"], fails=["fails"], finishes=["finishes"])}
    created = run(api, sqs, aws, runner, payload, exit_code=None, notify=False)
    assert api.post(_path(created["executionUrl"]) + "/stop").status_code == 200
    drive(sqs, aws, "notify")
    assert [r.path for r in receiver.received()] == ["/finishes"]
    assert receiver.received()[0].json["execution"]["status"] == "stopped"


def test_failed_attempts_are_retried_and_each_is_recorded(api, sqs, aws, runner, receiver):
    receiver.answer("/flaky", 500, 503)
    payload = {"image": "ubuntu", "command": "true",
               "webhooks": hooks(receiver, succeeds=[("flaky", {"retries": 3})])}
    created = run(api, sqs, aws, runner, payload)
    assert len(receiver.received("/flaky")) == 3
    recorded = execution(api, created)["notifications"]
    assert [(n["attempt"], n["statusCode"], n["ok"], n["retryIn"]) for n in recorded] == [
        (1, 500, False, 0.0), (2, 503, False, 0.0), (3, 200, True, None)]
    assert "answered 500" in recorded[0]["error"]
    deliveries = [r.headers["X-Fastlane-Delivery"] for r in receiver.received("/flaky")]
    assert deliveries == [f"{created['executionId']}/webhook/succeeds/0/{n}" for n in (1, 2, 3)]


def test_a_failed_attempt_waits_on_the_queue_before_the_next(api, sqs, aws, settings_env, receiver):
    settings_env.setenv("WEBHOOK_BACKOFF_MIN", "30")
    runner = _install(settings_env)
    receiver.answer("/down", 500)
    payload = {"image": "ubuntu", "command": "true", "webhooks": hooks(receiver, succeeds=[("down", {"retries": 2})])}
    created = run(api, sqs, aws, runner, payload)
    assert len(receiver.received("/down")) == 1
    [attempt] = execution(api, created)["notifications"]
    assert (attempt["statusCode"], attempt["retryIn"]) == (500, 30.0)
    attributes = sqs.get_queue_attributes(QueueUrl=aws["NOTIFY_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_retries_stop_after_the_hooks_retries(api, sqs, aws, runner, receiver):
    receiver.answer("/broken", 500, 500, 500, 500)
    payload = {"image": "ubuntu", "command": "true", "webhooks": hooks(receiver, finishes=[("broken", {"retries": 1})])}
    created = run(api, sqs, aws, runner, payload)
    assert len(receiver.received("/broken")) == 2
    assert [(n["attempt"], n["retryIn"]) for n in execution(api, created)["notifications"]] == [(1, 0.0), (2, None)]


def test_a_hook_to_the_instance_metadata_address_is_refused_and_recorded(api, sqs, aws, settings_env, receiver):
    settings_env.setenv("WEBHOOK_ALLOW_PRIVATE", "false")
    runner = _install(settings_env)
    payload = {"image": "ubuntu", "command": "true",
               "webhooks": {"finishes": [{"url": "http://169.254.169.254/latest/meta-data/iam/", "retries": 5},
                                         {"url": f"{receiver.url}/local"}]}}
    created = run(api, sqs, aws, runner, payload)
    assert receiver.received() == []
    recorded = {n["url"]: n for n in execution(api, created)["notifications"]}  # URLs as shown: redacted
    metadata = recorded["http://169.254.169.254/latest/\u2026"]
    assert metadata["ok"] is False and metadata["statusCode"] is None and metadata["retryIn"] is None
    assert "169.254.169.254, a link-local (instance metadata) address; webhooks may not reach it" in metadata["error"]
    assert "127.0.0.1, a loopback address" in recorded[f"{receiver.url}/\u2026"]["error"]
    assert drive(sqs, aws, "notify") == 0  # refused hooks are not retried


def test_a_redirect_is_recorded_not_followed(api, sqs, aws, runner, receiver):
    receiver.answer("/moved", 302, headers={"Location": "http://169.254.169.254/"})
    payload = {"image": "ubuntu", "command": "true", "webhooks": hooks(receiver, finishes=["moved"])}
    created = run(api, sqs, aws, runner, payload)
    assert [r.path for r in receiver.received()] == ["/moved"]
    [attempt] = execution(api, created)["notifications"]
    assert attempt["statusCode"] == 302 and not attempt["ok"]
    assert "redirects are not followed" in attempt["error"]


# webhook URLs are secrets ---------------------------------------------------------------------------

SECRET_PATH = "/services/T0001/B0002/s3cretT0ken"
SECRET_QUERY = "key=qu3ryS3cret"


def secret_hook(receiver, **options) -> dict:
    """A Slack-style hook: its credential is the end of its path and its query."""
    return {"url": f"{receiver.url}{SECRET_PATH}?{SECRET_QUERY}", **options}


def test_a_client_sees_webhook_urls_redacted_and_the_receiver_gets_the_whole_url(api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "true", "webhooks": {"finishes": [secret_hook(receiver)]}}
    created = run(api, sqs, aws, runner, payload)
    assert [r.path for r in receiver.received()] == [f"{SECRET_PATH}?{SECRET_QUERY}"]  # delivered to all of it
    assert b"s3cretT0ken" not in receiver.received()[0].body  # a body never holds hooks

    shown = f"{receiver.url}/services/\u2026"
    job = api.get(_path(created["jobUrl"])).json["job"]
    assert job["metadata"]["webhooks"] == {"finishes": [{"url": shown, "headers": {}, "retries": 0}]}
    [attempt] = execution(api, created)["notifications"]
    assert attempt["url"] == shown and attempt["ok"]
    assert [n["url"] for n in job["executions"][0]["notifications"]] == [shown]
    for answer in (api.get(_path(created["jobUrl"])), api.get(_path(created["executionUrl"]))):
        assert "s3cretT0ken" not in answer.body.decode() and "qu3ryS3cret" not in answer.body.decode()


def test_a_redirect_to_the_hooks_own_url_is_recorded_redacted(api, sqs, aws, runner, receiver):
    receiver.answer(f"{SECRET_PATH}?{SECRET_QUERY}", 301,
                    headers={"Location": f"https://hooks.example{SECRET_PATH}?{SECRET_QUERY}"})
    payload = {"image": "ubuntu", "command": "true", "webhooks": {"finishes": [secret_hook(receiver)]}}
    created = run(api, sqs, aws, runner, payload)
    [attempt] = execution(api, created)["notifications"]
    assert attempt["error"] == "redirects are not followed (Location: https://hooks.example/services/\u2026)"


def test_an_attempt_is_logged_with_the_url_redacted(api, sqs, aws, runner, receiver, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="fastlane")
    receiver.answer(f"{SECRET_PATH}?{SECRET_QUERY}", 302, headers={"Location": f"https://hooks.example{SECRET_PATH}"})
    payload = {"image": "ubuntu", "command": "true", "webhooks": {"finishes": [secret_hook(receiver, retries=1)]}}
    run(api, sqs, aws, runner, payload)
    attempts = [r for r in caplog.records if r.getMessage() == "webhook attempted"]
    shown = f"{receiver.url}/services/\u2026"
    assert [(r.levelname, r.url) for r in attempts] == [("WARNING", shown), ("INFO", shown)]  # failed, then sent
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "s3cretT0ken" not in logged and "qu3ryS3cret" not in logged


def test_the_connection_goes_to_the_address_that_was_checked(receiver):
    """The name is resolved once, checked, and the socket opened to that address; the request
    still names the host."""
    asked = []

    def resolver(host, port):
        asked.append(host)
        return ["127.0.0.1"]

    result = post(f"http://hooks.example:{receiver.port}/pinned", b"{}", {"Content-Type": "application/json"},
                  timeout=5, allow_private=True, resolver=resolver)
    assert result.ok and result.address == "127.0.0.1" and asked == ["hooks.example"]
    assert receiver.received("/pinned")[0].headers["Host"] == f"hooks.example:{receiver.port}"


def test_a_receiver_that_does_not_answer_is_a_timeout(receiver):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        result = post(f"http://127.0.0.1:{silent.getsockname()[1]}/", b"{}", {}, timeout=0.5, allow_private=True)
    finally:
        silent.close()
    assert not result.ok and not result.permanent and result.error == "timed out after 0.5 s"


@pytest.mark.parametrize("mode", ["dripping", "dripping-tls"])
def test_a_receiver_that_drips_its_answer_or_handshake_is_cut_off_at_the_timeout(mode):
    """Each read gets a byte in time; the attempt as a whole still ends at WEBHOOK_TIMEOUT."""
    import time

    slow = Stalling(mode, interval=0.1).start()
    try:
        started = time.monotonic()
        result = post(f"{slow.url}/", b"{}", {}, timeout=0.5, allow_private=True)
        elapsed = time.monotonic() - started
    finally:
        slow.stop()
    assert not result.ok and not result.permanent and result.error == "timed out after 0.5 s"
    assert elapsed < 0.5 + 0.3


def test_a_slow_name_lookup_counts_against_the_timeout():
    import threading
    import time

    answered = threading.Event()

    def slow_resolver(host, port):
        answered.wait(5)
        return ["127.0.0.1"]

    started = time.monotonic()
    result = post("http://hooks.example/x", b"{}", {}, timeout=0.3, allow_private=True, resolver=slow_resolver)
    answered.set()
    assert result.error == "timed out after 0.3 s" and time.monotonic() - started < 0.3 + 0.3


# one slow receiver ----------------------------------------------------------------------------------


class Context:
    """A Lambda context whose function has `seconds` left from now."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


@dataclass
class Invocation:
    received: int
    elapsed: float
    failed: set[str]
    receives: list[int]  # ApproximateReceiveCount of each message received


def invoke(sqs, aws, budget: float, first: str = "") -> Invocation:
    """One invocation of the notify function as Lambda makes it: a batch of up to 10 received
    messages (those whose hook URL starts with `first` ahead of the others) and a context with
    `budget` seconds. What succeeded is deleted, unless the function outran its time: Lambda
    would have killed it, and the whole batch comes back."""
    import app as app_module
    from infra.local.event_sources import sqs_event

    url = aws["NOTIFY_QUEUE_URL"]
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    if first:
        received.sort(key=lambda m: not (json.loads(m["Body"]).get("hook") or {}).get("url", "").startswith(first))
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    started = time.monotonic()
    response = app_module.send_notifications(sqs_event(received, arn, REGION), Context(budget)) if received else {}
    elapsed = time.monotonic() - started
    failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
    done = [m for m in received if m["MessageId"] not in failed]
    if done and elapsed <= budget:
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(done)])
    return Invocation(len(received), elapsed, failed,
                      [int(m["Attributes"]["ApproximateReceiveCount"]) for m in received])


def dead_letters(sqs, aws) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=aws["NOTIFY_DLQ_URL"], AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def slow_hooks(settings_env):
    """Webhooks cut at 1 s, retried 1 s later."""
    settings_env.setenv("WEBHOOK_TIMEOUT", "1")
    settings_env.setenv("WEBHOOK_BACKOFF_MIN", "1")
    return _install(settings_env)


@pytest.mark.parametrize("mode", Stalling.MODES)
def test_one_slow_receiver_costs_the_other_messages_of_its_batch_nothing(api, sqs, aws, slow_hooks, receiver, mode):
    """A receiver that holds its connection (silent, or dripping its answer or TLS handshake)
    in a batch with 9 messages to other tenants: those 9 are delivered in that invocation, the
    function ends in its time, the slow one's attempt fails at WEBHOOK_TIMEOUT and is retried by
    its own backoff, and nothing comes near the dead-letter queue."""
    slow = Stalling(mode).start()
    try:
        stalled = run(api, sqs, aws, slow_hooks, {"image": "ubuntu", "command": "true",
                                                 "webhooks": {"finishes": [{"url": f"{slow.url}/hook", "retries": 1}]}},
                      notify=False)
        run(api, sqs, aws, slow_hooks, {"image": "ubuntu", "command": "true",
                                        "webhooks": hooks(receiver, finishes=[f"tenant-{n}" for n in range(9)])},
            notify=False)

        # The slow one first, the others behind it; time for all of them (6 s a message) once it is cut off.
        batch = invoke(sqs, aws, budget=12.0, first=slow.url)
        assert (batch.received, batch.failed) == (10, set()) and batch.elapsed < 12.0
        assert sorted(r.path for r in receiver.received()) == sorted(f"/tenant-{n}" for n in range(9))
        [attempt] = execution(api, stalled)["notifications"]
        assert (attempt["ok"], attempt["error"], attempt["retryIn"]) == (False, "timed out after 1 s", 1.0)

        receives = batch.receives

        def retried() -> bool:
            receives.extend(invoke(sqs, aws, budget=60.0).receives)
            return len(execution(api, stalled)["notifications"]) == 2

        wait_until(retried, timeout=20, what="the slow receiver's second attempt")
    finally:
        slow.stop()
    assert [n["attempt"] for n in execution(api, stalled)["notifications"]] == [1, 2]
    assert set(receives) == {1} and dead_letters(sqs, aws) == 0  # every message was received once


def test_messages_a_batch_has_no_time_left_for_go_back_without_spending_a_receive(api, sqs, aws, slow_hooks,
                                                                                   receiver):
    """A batch with more slow work than its function has time for: the messages it does not
    reach before its time runs short are sent again as new messages and reported done, so the
    function ends in time and none of them is a receive nearer the dead-letter queue."""
    slow = Stalling("silent").start()
    try:
        stalled = run(api, sqs, aws, slow_hooks, {"image": "ubuntu", "command": "true",
                                                 "webhooks": {"finishes": [{"url": f"{slow.url}/{n}"} for n in range(4)]}},
                      notify=False)
        run(api, sqs, aws, slow_hooks, {"image": "ubuntu", "command": "true",
                                        "webhooks": hooks(receiver, finishes=[f"tenant-{n}" for n in range(6)])},
            notify=False)

        batch = invoke(sqs, aws, budget=3.0, first=slow.url)
        assert (batch.received, batch.failed) == (10, set()) and batch.elapsed < 3.0
        assert len(execution(api, stalled)["notifications"]) == 1  # the first; no time was left for another
        assert receiver.received() == []

        receives = batch.receives

        def delivered() -> bool:
            receives.extend(invoke(sqs, aws, budget=60.0).receives)
            return len(receiver.received()) == 6 and len(execution(api, stalled)["notifications"]) == 4

        wait_until(delivered, timeout=30, what="every postponed notification")
    finally:
        slow.stop()
    assert set(receives) == {1} and dead_letters(sqs, aws) == 0
    assert all(n["error"] == "timed out after 1 s" and n["attempt"] == 1
               for n in execution(api, stalled)["notifications"])  # postponing spent no attempt


# at least once, sent once -----------------------------------------------------------------------------


def _duplicate_queued(sqs, url: str) -> int:
    """Replace every message waiting on the queue by two copies of it, as SQS may deliver."""
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        for _ in range(2):
            sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
    return len(messages)


def test_a_duplicate_delivery_sends_nothing_twice(api, sqs, aws, mail, receiver):
    payload = {"image": "ubuntu", "command": "true", "webhooks": hooks(receiver, succeeds=["once"]),
               "notify": {"succeeds": ["ana@example.com"]}}
    created = run(api, sqs, aws, mail, payload, notify=False)
    assert _duplicate_queued(sqs, aws["NOTIFY_QUEUE_URL"]) == 2
    assert drive(sqs, aws, "notify") == 4
    assert len(receiver.received("/once")) == 1
    assert len(sent_mail()) == 1
    assert len(execution(api, created)["notifications"]) == 2


def test_a_duplicate_ecs_event_publishes_nothing_twice(api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "true", "webhooks": hooks(receiver, finishes=["end"])}
    created = run(api, sqs, aws, runner, payload, notify=False)
    stopped = task_event(key_of(created), runner.tasks[created["executionId"]], "STOPPED", exit_code=0)
    send_events(sqs, aws["EVENTS_QUEUE_URL"], stopped, stopped)
    drive(sqs, aws, "events")
    drive(sqs, aws, "notify")
    assert len(receiver.received("/end")) == 1


def test_a_worker_that_died_after_sending_is_not_sent_again(aws):
    """The delivery log: the attempt's outcome is kept once it is made, so a worker that takes
    over an expired claim finishes the bookkeeping without sending again."""
    from chalicelib.adapters.deliveries import DeliveryLog
    from chalicelib.ports import ClaimState

    BUSY, CLAIMED, DONE, SENT = ClaimState.BUSY, ClaimState.CLAIMED, ClaimState.DONE, ClaimState.SENT

    clock = [1000.0]
    log = DeliveryLog(boto3.client("dynamodb", region_name=REGION), "test-deliveries",
                      clock=lambda: clock[0])
    assert log.claim("e/webhook/fails/0/1", 60).state == CLAIMED
    assert log.claim("e/webhook/fails/0/1", 60).state == BUSY  # another worker is sending
    log.mark_sent("e/webhook/fails/0/1", {"statusCode": 200}, 60)
    clock[0] += 61  # the worker died; its lease runs out
    taken = log.claim("e/webhook/fails/0/1", 60)
    assert (taken.state, taken.outcome) == (SENT, {"statusCode": 200})
    log.complete("e/webhook/fails/0/1")
    clock[0] += 1000
    assert log.claim("e/webhook/fails/0/1", 60).state == DONE


def test_a_claim_given_back_can_be_taken_again(aws):
    from chalicelib.adapters.deliveries import DeliveryLog
    from chalicelib.ports import ClaimState

    CLAIMED = ClaimState.CLAIMED

    log = DeliveryLog(boto3.client("dynamodb", region_name=REGION), "test-deliveries")
    assert log.claim("k", 60).state == CLAIMED
    log.release("k")
    assert log.claim("k", 60).state == CLAIMED


# e-mail -------------------------------------------------------------------------------------------------


def test_emails_go_through_ses_to_the_lists_that_apply(api, sqs, aws, mail):
    payload = {"image": "ubuntu", "command": "true", "metadata": {"user": "ana"},
               "notify": {"succeeds": ["ana@example.com", "bo@example.com"], "fails": ["ops@example.com"],
                          "finishes": ["log@example.com"], "starts": ["start@example.com"]}}
    created = run(api, sqs, aws, mail, payload, exit_code=0)
    messages = {tuple(m.destinations["ToAddresses"]): m for m in sent_mail()}
    assert set(messages) == {("ana@example.com", "bo@example.com"), ("log@example.com",), ("start@example.com",)}
    done = messages[("ana@example.com", "bo@example.com")]
    assert done.source == SENDER
    assert done.subject == f"[fastlane] task t, job {created['jobId']}: done, exit code 0"
    assert messages[("start@example.com",)].subject == f"[fastlane] task t, job {created['jobId']}: started"
    assert created["executionUrl"] in done.body and created["jobUrl"] in done.body  # moto keeps the HTML part
    recorded = execution(api, created)["notifications"]
    assert sorted((n["event"], n["ok"]) for n in recorded) == [("finishes", True), ("starts", True),
                                                               ("succeeds", True)]
    assert all(n["kind"] == "email" and n["messageId"] for n in recorded)


def test_the_subject_says_an_execution_timed_out(api, sqs, aws, mail):
    from chalicelib import wiring

    payload = {"image": "ubuntu", "command": "sleep 600", "timeout": 1, "notify": {"fails": ["ops@example.com"]}}
    created = run(api, sqs, aws, mail, payload, exit_code=None, notify=False)
    engine = wiring.get_engine()
    engine.ending.time_out(wiring.backend().executions.get_execution(created["jobId"], created["executionId"]))
    drive(sqs, aws, "notify")
    [message] = sent_mail()
    assert message.subject == f"[fastlane] task t, job {created['jobId']}: timed out"


def test_the_text_and_html_parts_hold_the_details_and_links():
    from chalicelib.domain.model import Execution, ExecutionStatus, Job, JobSpec
    from chalicelib.services.notify import mail_content

    job = Job(task_id="t", job_id="j1", spec=JobSpec(image="ubuntu", command="echo <b>", metadata={"user": "ana"}),
              created_at=1.0, last_modified_at=1.0)
    item = Execution(task_id="t", job_id="j1", execution_id="e1", image="ubuntu", command="echo <b>",
                     status=ExecutionStatus.FAILED, created_at=1700000000.0, started_at=1700000001.0,
                     finished_at=1700000002.5, exit_code=2, error="boom")
    subject, text, html = mail_content("fails", job, item, BASE)
    assert subject == "[fastlane] task t, job j1: failed, exit code 2"
    assert "Exit code: 2\n" in text and "Error:     boom\n" in text and "2023-11-14 22:13:22 UTC" in text
    assert f"{BASE}/tasks/t/jobs/j1/executions/e1/logs" in text and f"{BASE}/tasks/t/jobs/j1" in text
    assert text.startswith("Task t, job j1: failed, exit code 2\n")
    assert "echo &lt;b&gt;" in html and f'href="{BASE}/tasks/t/jobs/j1/executions/e1"' in html
    assert '"user": "ana"' in text


def test_an_unverified_sender_is_recorded_and_not_retried(api, sqs, aws, settings_env):
    settings_env.setenv("MAIL_SENDER", "nobody@unverified.example")
    runner = _install(settings_env)
    created = run(api, sqs, aws, runner, {"image": "ubuntu", "command": "true",
                                          "notify": {"finishes": ["ops@example.com"]}})
    [attempt] = execution(api, created)["notifications"]
    assert attempt["ok"] is False and "MessageRejected" in attempt["error"]
    assert sent_mail() == [] and drive(sqs, aws, "notify") == 0


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_without_a_sender_email_is_skipped_with_a_warning(api, sqs, aws, runner, receiver, monkeypatch):
    # The warning is recorded where the service calls it: a handler on the logger would depend on
    # how other tests in the same process left the logging configuration.
    from chalicelib.services import notify

    lines = _Lines()
    warn = notify.logger.warning
    monkeypatch.setattr(notify.logger, "warning",
                        lambda message, *args, **kwargs: (lines.lines.append(str(message)),
                                                          warn(message, *args, **kwargs))[1])
    payload = {"image": "ubuntu", "command": "true", "notify": {"finishes": ["ops@example.com"]},
               "webhooks": hooks(receiver, finishes=["end"])}
    created = run(api, sqs, aws, runner, payload)
    ended = execution(api, created)
    assert (ended["status"], ended["exitCode"]) == ("done", 0)
    skipped = [n for n in ended["notifications"] if n["kind"] == "email"]
    assert [(n["ok"], n["skipped"], n["error"]) for n in skipped] == [(False, True, MAIL_OFF)]
    assert len(receiver.received("/end")) == 1  # webhooks are unaffected
    assert any(line.startswith(MAIL_OFF) for line in lines.lines)
    assert sent_mail() == []
    assert drive(sqs, aws, "notify") == 0  # nothing failed, nothing comes back


# the farm's status --------------------------------------------------------------------------------------


def test_status_shows_the_notify_queues_and_warns_that_email_is_off(api, runner):
    body = api.get("/status").json
    assert {"notify", "notifyDeadLetter"} <= set(body["queues"])
    assert body["notifications"] == {"webhooks": "on", "mail": "off", "warnings": [MAIL_OFF]}


def test_status_without_warnings_when_a_sender_is_configured(api, mail):
    assert api.get("/status").json["notifications"] == {"webhooks": "on", "mail": "on", "warnings": []}


def test_the_notify_message_on_the_queue(api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "true",
               "webhooks": {"fails": [{"url": "https://hooks.example/f", "headers": {"X-Team": "a"}, "retries": 2}]}}
    created = run(api, sqs, aws, runner, payload, exit_code=3, notify=False)
    [message] = [json.loads(m["Body"]) for m in
                 sqs.receive_message(QueueUrl=aws["NOTIFY_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]]
    assert message == {"kind": "webhook", "event": "fails", "index": 0,
                       "hook": {"url": "https://hooks.example/f", "headers": {"X-Team": "a"}, "retries": 2},
                       "taskId": "t", "jobId": created["jobId"], "executionId": created["executionId"],
                       "status": "failed", "attempt": 1, "baseUrl": BASE}


def test_an_execution_whose_running_event_comes_last_announces_starts_before_finishes(
        api, sqs, aws, runner, receiver):
    payload = {"image": "ubuntu", "command": "true", "webhooks": hooks(receiver, starts=["start"], finishes=["end"])}
    created = api.post("/tasks/t", payload).json
    drive(sqs, aws, "jobs")
    arn = runner.tasks[created["executionId"]]
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "STOPPED", exit_code=0))
    drive(sqs, aws, "events")
    send_events(sqs, aws["EVENTS_QUEUE_URL"], task_event(key_of(created), arn, "RUNNING"))
    drive(sqs, aws, "events")
    drive(sqs, aws, "notify")

    events = [entry["event"] for entry in execution(api, created)["notifications"]]
    assert events == ["starts", "finishes"]  # each once, in lifecycle order
    assert len(receiver.received("/start")) == 1 and len(receiver.received("/end")) == 1
