"""Webhooks really arrive: jobs run by the local runtime notify a receiver on 127.0.0.1, signed,
once per event, and failed deliveries are retried with growing delays, every attempt recorded."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from chalicelib.domain.webhooks import signature_matches
from tests.system.conftest import Runtime, running_runtime, wait_until
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.system
SECRET = "system-hook-secret"
BACKOFF = 2  # seconds before the first retry; then 4


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with running_runtime(tmp_path_factory.mktemp("notify-runtime"),
                       {"WEBHOOK_SIGNING_SECRET": SECRET, "WEBHOOK_BACKOFF_MIN": str(BACKOFF)}) as rt:
        yield rt


def hooked_job(runtime: Runtime, receiver: Receiver, command: str, **hooks: dict) -> tuple[dict, str]:
    """Post a job whose hooks post to paths under a prefix of its own; its enqueue answer and the prefix."""
    prefix = f"/{uuid.uuid4().hex[:8]}"
    webhooks = {event: [{"url": f"{receiver.url}{prefix}/{event}", **options}] for event, options in hooks.items()}
    created = runtime.post("/tasks/notify", {"image": "ubuntu", "command": command, "metadata": {"team": "ops"},
                                             "webhooks": webhooks})
    assert created.status_code == 200, created.text
    return created.json(), prefix


def notifications(runtime: Runtime, created: dict, count: int, timeout: float = 30.0) -> list[dict]:
    """The execution's recorded notification attempts, once there are `count` of them."""
    def recorded():
        execution = runtime.get(runtime.path(created["executionUrl"])).json()["execution"]
        return execution["notifications"] if len(execution["notifications"]) >= count else None

    return wait_until(recorded, timeout=timeout, what=f"{count} notification attempts recorded")


def test_a_job_that_exits_0_posts_succeeds_and_finishes_once_each(runtime, receiver):
    created, prefix = hooked_job(runtime, receiver, "true", succeeds={}, fails={}, finishes={})
    recorded = notifications(runtime, created, 2)
    assert sorted((n["event"], n["statusCode"], n["ok"]) for n in recorded) == [
        ("finishes", 200, True), ("succeeds", 200, True)]
    got = [r for r in receiver.received() if r.path.startswith(prefix + "/")]
    assert sorted(r.path for r in got) == [f"{prefix}/finishes", f"{prefix}/succeeds"]
    for request in got:
        assert request.headers["Content-Type"] == "application/json"
        assert signature_matches(SECRET, request.body, request.headers["X-Fastlane-Signature"])
        body = request.json
        assert body["execution"]["executionId"] == created["executionId"]
        assert (body["execution"]["status"], body["execution"]["exitCode"]) == ("done", 0)
        assert body["job"]["id"] == created["jobId"] and body["job"]["metadata"]["custom"] == {"team": "ops"}
        assert body["execution"]["url"] == created["executionUrl"]  # links point at the runtime
    assert {r.json["event"] for r in got} == {"succeeds", "finishes"}


def test_a_job_that_exits_1_posts_fails_and_finishes_once_each(runtime, receiver):
    created, prefix = hooked_job(runtime, receiver, "false", succeeds={}, fails={}, finishes={})
    notifications(runtime, created, 2)
    got = [r for r in receiver.received() if r.path.startswith(prefix + "/")]
    assert sorted(r.path for r in got) == [f"{prefix}/fails", f"{prefix}/finishes"]
    fails = receiver.received(f"{prefix}/fails")[0]
    assert signature_matches(SECRET, fails.body, fails.headers["X-Fastlane-Signature"])
    assert (fails.json["event"], fails.json["execution"]["status"], fails.json["execution"]["exitCode"]) == (
        "fails", "failed", 1)


def test_a_failing_receiver_gets_retries_with_growing_delays_all_recorded(runtime, receiver):
    created, prefix = hooked_job(runtime, receiver, "true", succeeds={"retries": 3})
    receiver.answer(f"{prefix}/succeeds", 500, 500)
    recorded = notifications(runtime, created, 3, timeout=60)
    assert [(n["attempt"], n["statusCode"], n["ok"], n["retryIn"]) for n in recorded] == [
        (1, 500, False, BACKOFF), (2, 500, False, 2 * BACKOFF), (3, 200, True, None)]
    attempts = receiver.received(f"{prefix}/succeeds")
    assert len(attempts) == 3
    first_wait, second_wait = (attempts[1].at - attempts[0].at), (attempts[2].at - attempts[1].at)
    assert first_wait >= BACKOFF - 0.5 and second_wait >= 2 * BACKOFF - 0.5 and second_wait > first_wait
    assert [r.headers["X-Fastlane-Delivery"].rsplit("/", 1)[1] for r in attempts] == ["1", "2", "3"]
    assert all(signature_matches(SECRET, r.body, r.headers["X-Fastlane-Signature"]) for r in attempts)
