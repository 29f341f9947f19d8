"""Retry policies: what a payload may say, what a rule decides, and why ECS says a task failed."""
from __future__ import annotations

import pytest

from chalicelib.domain.ecs import task_state
from chalicelib.domain.errors import ValidationError
from chalicelib.domain.model import JobSpec
from chalicelib.domain.payload import validate_job_payload
from chalicelib.domain.retry import (
    CAPACITY,
    EXIT,
    LAUNCH,
    LOST,
    MAX_IGNORED_RETRIES,
    OOM,
    Backoff,
    RetryPolicy,
    classify_refusal,
    classify_stop,
    parse_retry,
)

EXAMPLE = {  # API.md's
    "attempts": 5,
    "backoff": {"initial": 2, "factor": 2, "max": 600, "jitter": 0.25},
    "rules": [
        {"reasons": ["capacity", "lost"], "action": "ignore"},
        {"exitCodes": [2, "64-78"], "action": "fail"},
        {"reasons": ["timeout"], "action": "retry"},
    ],
    "default": "retry",
}


def refused(value, field: str) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_retry(value, max_retries=10)
    assert caught.value.field == field
    return str(caught.value)


def test_the_contract_example_is_accepted_and_round_trips_through_storage():
    policy = parse_retry(EXAMPLE, max_retries=10)
    assert policy.attempts == 5 and policy.backoff == Backoff(2, 2, 600, 0.25)
    assert policy.rules[1].exit_codes == ((2, 2), (64, 78))
    assert RetryPolicy.from_dict(policy.to_dict()) == policy
    spec = JobSpec(image="ubuntu", command="true", retry=policy)
    assert JobSpec.from_dict(spec.to_dict()) == spec


def test_the_first_matching_rule_decides_and_the_default_otherwise():
    policy = parse_retry(EXAMPLE, max_retries=10)
    assert (policy.decide(CAPACITY, None).action, policy.decide(CAPACITY, None).by) == ("ignore", "rules[0]")
    assert policy.decide(EXIT, 70).action == "fail" and policy.decide(EXIT, 2).rule == 1
    assert policy.decide("timeout", None).by == "rules[2]"
    assert (policy.decide(EXIT, 1).action, policy.decide(EXIT, 1).by) == ("retry", "default")


def test_a_rule_giving_reasons_and_exit_codes_needs_both_to_match():
    policy = parse_retry({"attempts": 1, "rules": [{"reasons": ["oom"], "exitCodes": [137], "action": "fail"}]}, 10)
    assert policy.decide(OOM, 137).action == "fail"
    assert policy.decide(EXIT, 137).action == "retry" and policy.decide(OOM, None).action == "retry"


def test_a_policy_that_may_ignore_has_the_ceiling_in_its_budget():
    assert parse_retry(EXAMPLE, 10).budget == 5 + MAX_IGNORED_RETRIES
    assert parse_retry({"attempts": 3}, 10).budget == 3


def test_the_backoff_grows_to_its_maximum_less_its_jitter():
    backoff = Backoff(2, 3, 50, 0.5)
    assert [Backoff(2, 3, 50).delay(n) for n in range(4)] == [2, 6, 18, 50]
    assert all(25 <= backoff.delay(5) <= 50 for _ in range(50))


@pytest.mark.parametrize(("value", "field"), [
    ([], "retry"),
    ({"attempts": 11}, "retry.attempts"),
    ({"attempts": True}, "retry.attempts"),
    ({"attempts": 1, "tries": 2}, "retry.tries"),
    ({"rules": [{"reasons": ["exit", "disk"], "action": "fail"}]}, "retry.rules[0].reasons[1]"),
    ({"rules": [{"exitCodes": ["78-64"], "action": "fail"}]}, "retry.rules[0].exitCodes[0]"),
    ({"rules": [{"exitCodes": [256], "action": "fail"}]}, "retry.rules[0].exitCodes[0]"),
    ({"rules": [{"exitCodes": ["1-300"], "action": "fail"}]}, "retry.rules[0].exitCodes[0]"),
    ({"rules": [{"exitCodes": [], "action": "fail"}]}, "retry.rules[0].exitCodes"),
    ({"rules": [{"action": "fail"}]}, "retry.rules[0]"),
    ({"rules": [{"reasons": ["exit"], "action": "skip"}]}, "retry.rules[0].action"),
    ({"rules": [{"reasons": ["exit"], "action": "fail"}] * 21}, "retry.rules"),
    ({"default": "sometimes"}, "retry.default"),
    ({"backoff": {"initial": 0}}, "retry.backoff.initial"),
    ({"backoff": {"initial": 10, "max": 5}}, "retry.backoff.max"),
    ({"backoff": {"factor": 0.5}}, "retry.backoff.factor"),
    ({"backoff": {"jitter": 1.5}}, "retry.backoff.jitter"),
])
def test_a_bad_policy_is_refused_naming_the_field(value, field):
    refused(value, field)


def test_the_refusals_say_the_rule():
    assert "inverted range: 78 is above 64" in refused({"rules": [{"exitCodes": ["78-64"], "action": "fail"}]},
                                                          "retry.rules[0].exitCodes[0]")
    assert "at most 20" in refused({"rules": [{"reasons": ["exit"], "action": "fail"}] * 21}, "retry.rules")
    assert "exit, timeout, oom, launch, capacity, lost" in refused(
        {"rules": [{"reasons": ["disk"], "action": "fail"}]}, "retry.rules[0].reasons[0]")


def test_retries_and_retry_together_are_refused():
    with pytest.raises(ValidationError) as caught:
        validate_job_payload({"image": "ubuntu", "command": "true", "retries": 2, "retry": {"attempts": 2}},
                             max_timeout=3600, max_retries=10)
    assert caught.value.field == "retry"


# Why ECS says a task failed, from the shapes its task state change events carry ----------------


def stopped(**detail):
    base = {"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/0123", "lastStatus": "STOPPED"}
    return task_state({**base, **detail})


RECORDED = [
    ("exit 1", stopped(stopCode="EssentialContainerExited", stoppedReason="Essential container in task exited",
                       containers=[{"name": "job", "exitCode": 1}]), EXIT),
    ("killed for memory", stopped(stopCode="EssentialContainerExited",
                                  stoppedReason="Essential container in task exited",
                                  containers=[{"name": "job", "exitCode": 137,
                                               "reason": "OutOfMemoryError: Container killed due to memory usage"}]),
     OOM),
    ("Spot interruption", stopped(stopCode="SpotInterruption", stoppedReason="Your Spot Task was interrupted.",
                                  containers=[{"name": "job"}]), CAPACITY),
    ("Spot termination notice", stopped(stopCode="TerminationNotice",
                                        stoppedReason="Your Spot Task received a termination notice.",
                                        containers=[{"name": "job"}]), CAPACITY),
    ("image not pulled", stopped(stopCode="TaskFailedToStart",
                                 stoppedReason="CannotPullContainerError: pull image manifest has been retried 5 "
                                               "time(s): failed to resolve ref docker.io/library/nope:latest",
                                 containers=[{"name": "job", "reason": "CannotPullContainerError: pull image"}]),
     LAUNCH),
    ("no secrets", stopped(stopCode="TaskFailedToStart",
                           stoppedReason="ResourceInitializationError: unable to pull secrets or registry auth",
                           containers=[{"name": "job"}]), LAUNCH),
    ("stopped by someone else", stopped(stopCode="UserInitiated", stoppedReason="Task stopped by an operator",
                                        containers=[{"name": "job"}]), LOST),
]


@pytest.mark.parametrize(("what", "state", "reason"), RECORDED, ids=[r[0] for r in RECORDED])
def test_the_reason_of_a_stopped_task_is_read_from_what_ecs_reports(what, state, reason):
    said = " ".join(filter(None, (state.reason, state.stopped_reason)))
    assert classify_stop(state.exit_code, said, state.stop_code) == reason


def test_a_refused_launch_is_capacity_or_the_launch_itself():
    assert classify_refusal("Capacity is unavailable at this time. Please try again later.") == CAPACITY
    assert classify_refusal("RESOURCE:MEMORY") == CAPACITY
    assert classify_refusal("ThrottlingException: Rate exceeded") == CAPACITY
    assert classify_refusal("ClientException: Container.image repository should not be null or empty.") == LAUNCH
