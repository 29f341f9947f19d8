"""The IdempotencyKeys port: a key runs its action once and replays the first answer for a day;
the same key with another fingerprint is refused; only successes are kept; a key whose first
request is still running is in progress until its lease runs out."""
from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from chalicelib.domain.errors import DependencyDown, ValidationError
from chalicelib.domain.idempotency import KEEP_SECONDS, LEASE_SECONDS, Answer, body_fingerprint
from chalicelib.ports import KeyOutcome, KeyState
from tests.contract.support import Ports, at_once

KEY = "POST /tasks/nightly 0190e0a4-0000-7000-8000-00000000abcd"
BODY = body_fingerprint({"image": "ubuntu", "command": "echo hi"})
OTHER_BODY = body_fingerprint({"image": "ubuntu", "command": "echo bye"})
CREATED = Answer(200, '{"taskId": "nightly", "jobId": "0190e0a4-0000-7000-8000-000000000001", "note": "été"}')


class Action:
    """An action that answers `answer` and counts its runs."""

    def __init__(self, answer: Answer = CREATED, then: Callable[[], None] | None = None) -> None:
        self.answer, self.then, self.runs = answer, then, 0

    def __call__(self) -> Answer:
        self.runs += 1
        if self.then is not None:
            self.then()
        return self.answer


class Died(BaseException):
    """The request's process died with it (a Lambda killed at its timeout): nothing is cleaned up."""


def test_a_new_key_runs_its_action_and_a_repeat_replays_the_first_answer(backend: Ports) -> None:
    first, second = Action(), Action(Answer(200, '{"other": true}'))

    assert backend.idempotency_keys.run_once(KEY, BODY, first) == KeyOutcome(KeyState.RAN, CREATED)
    assert backend.idempotency_keys.run_once(KEY, BODY, second) == KeyOutcome(KeyState.REPLAYED, CREATED)
    assert (first.runs, second.runs) == (1, 0)


def test_the_replay_is_the_first_answer_exactly(backend: Ports) -> None:
    answer = Answer(201, '{"b": 1, "a": [1.0, "\\u00e9"]}\n', "application/json; charset=utf-8")
    backend.idempotency_keys.run_once(KEY, BODY, Action(answer))

    assert backend.idempotency_keys.run_once(KEY, BODY, Action()).answer == answer


def test_the_same_key_with_another_body_is_refused_and_runs_nothing(backend: Ports) -> None:
    backend.idempotency_keys.run_once(KEY, BODY, Action())
    other = Action()

    assert backend.idempotency_keys.run_once(KEY, OTHER_BODY, other) == KeyOutcome(KeyState.REUSED)
    assert other.runs == 0
    assert backend.idempotency_keys.run_once(KEY, BODY, Action()).state is KeyState.REPLAYED  # still the first


def test_keys_are_independent(backend: Ports) -> None:
    backend.idempotency_keys.run_once(KEY, BODY, Action())
    elsewhere = Action()

    assert backend.idempotency_keys.run_once(KEY.replace("nightly", "weekly"), BODY, elsewhere).state is KeyState.RAN
    assert elsewhere.runs == 1


@pytest.mark.parametrize("status", [400, 404, 409, 503])
def test_an_error_answer_is_not_kept_so_the_key_may_be_used_again(backend: Ports, status: int) -> None:
    refused = Answer(status, '{"error": "no", "operation": "enqueue_job"}')
    assert backend.idempotency_keys.run_once(KEY, BODY, Action(refused)) == KeyOutcome(KeyState.RAN, refused)

    corrected = Action()
    assert backend.idempotency_keys.run_once(KEY, OTHER_BODY, corrected) == KeyOutcome(KeyState.RAN, CREATED)
    assert corrected.runs == 1


def test_an_action_that_raises_frees_the_key_and_its_error_goes_through(backend: Ports) -> None:
    def fails() -> Answer:
        raise ValidationError("image and command must be filled in the request.")

    with pytest.raises(ValidationError):
        backend.idempotency_keys.run_once(KEY, BODY, fails)

    assert backend.idempotency_keys.run_once(KEY, BODY, Action()).state is KeyState.RAN


def test_a_key_is_in_progress_while_its_first_request_runs(backend: Ports) -> None:
    seen: list[KeyOutcome] = []
    meanwhile = Action()

    def while_running() -> None:
        seen.append(backend.idempotency_keys.run_once(KEY, BODY, meanwhile))
        seen.append(backend.idempotency_keys.run_once(KEY, OTHER_BODY, meanwhile))

    backend.idempotency_keys.run_once(KEY, BODY, Action(then=while_running))

    assert seen == [KeyOutcome(KeyState.IN_PROGRESS), KeyOutcome(KeyState.REUSED)]
    assert meanwhile.runs == 0


def test_a_key_whose_request_died_is_in_progress_until_its_lease_runs_out(backend: Ports) -> None:
    def dies() -> None:
        raise Died()

    with pytest.raises(Died):
        backend.idempotency_keys.run_once(KEY, BODY, Action(then=dies))

    backend.clock.advance(LEASE_SECONDS - 2)
    assert backend.idempotency_keys.run_once(KEY, BODY, Action()).state is KeyState.IN_PROGRESS
    backend.clock.advance(4)
    taken_over = Action()
    assert backend.idempotency_keys.run_once(KEY, BODY, taken_over) == KeyOutcome(KeyState.RAN, CREATED)
    assert taken_over.runs == 1


def test_an_answer_is_kept_for_a_day_then_the_key_is_new(backend: Ports) -> None:
    backend.idempotency_keys.run_once(KEY, BODY, Action())

    backend.clock.advance(KEEP_SECONDS - 60)
    assert backend.idempotency_keys.run_once(KEY, OTHER_BODY, Action()).state is KeyState.REUSED
    assert backend.idempotency_keys.run_once(KEY, BODY, Action()).state is KeyState.REPLAYED
    backend.clock.advance(62)
    later = Action(Answer(200, '{"second": true}'))
    assert backend.idempotency_keys.run_once(KEY, OTHER_BODY, later) == KeyOutcome(KeyState.RAN, later.answer)
    assert backend.idempotency_keys.run_once(KEY, OTHER_BODY, Action()).answer == later.answer


def test_of_requests_that_come_together_with_one_key_exactly_one_runs(backend: Ports) -> None:
    """The one that takes the key holds it until every other has answered: they can only find it
    in progress, and a second runner would wait for ever (and fail the deadline)."""
    count = 6
    answered = threading.Condition()
    others: list[KeyOutcome] = []

    def hold() -> None:
        with answered:
            assert answered.wait_for(lambda: len(others) == count - 1, timeout=60), "the others never answered"

    def request(_: int) -> KeyOutcome:
        outcome = backend.idempotency_keys.run_once(KEY, BODY, Action(then=hold))
        if outcome.state is not KeyState.RAN:
            with answered:
                others.append(outcome)
                answered.notify_all()
        return outcome

    outcomes = at_once(count, request)

    assert sorted(o.state.value for o in outcomes) == ["in_progress"] * (count - 1) + ["ran"]
    assert backend.idempotency_keys.run_once(KEY, BODY, Action()).state is KeyState.REPLAYED


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    action = Action()
    with pytest.raises(DependencyDown):
        backend.unreachable().idempotency_keys.run_once(KEY, BODY, action)
    assert action.runs == 0
