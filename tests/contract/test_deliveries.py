"""The Deliveries port: each notification is sent once. A key is claimed with a lease; while the
lease runs others are told `busy`; a lease that ran out is taken over, with the outcome of an
attempt that was made; a completed key is `done` for ever."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import DependencyDown
from chalicelib.ports import ClaimState
from tests.contract.support import Ports

KEY = "0190e0a4-0000-7000-8000-000000000001/webhook/fails/0/1"


def test_a_new_key_is_claimed_and_then_busy_while_the_lease_runs(backend: Ports) -> None:
    assert backend.deliveries.claim(KEY, 60).state is ClaimState.CLAIMED
    backend.clock.advance(59)
    assert backend.deliveries.claim(KEY, 60).state is ClaimState.BUSY


def test_a_claim_whose_lease_ran_out_is_taken_over(backend: Ports) -> None:
    backend.deliveries.claim(KEY, 60)
    backend.clock.advance(61)  # the worker died before it sent anything

    assert backend.deliveries.claim(KEY, 60).state is ClaimState.CLAIMED
    backend.clock.advance(30)
    assert backend.deliveries.claim(KEY, 60).state is ClaimState.BUSY  # the new lease runs


def test_an_attempt_that_was_made_is_never_made_again(backend: Ports) -> None:
    backend.deliveries.claim(KEY, 60)
    backend.deliveries.mark_sent(KEY, {"statusCode": 200, "attempt": 1}, 60)

    assert backend.deliveries.claim(KEY, 60).state is ClaimState.BUSY
    backend.clock.advance(61)  # sent, then the worker died before its bookkeeping
    taken = backend.deliveries.claim(KEY, 60)
    assert (taken.state, taken.outcome) == (ClaimState.SENT, {"statusCode": 200, "attempt": 1})


def test_a_completed_key_is_done_even_after_any_lease(backend: Ports) -> None:
    backend.deliveries.claim(KEY, 60)
    backend.deliveries.mark_sent(KEY, {"statusCode": 500}, 60)
    backend.deliveries.complete(KEY)

    assert backend.deliveries.claim(KEY, 60).state is ClaimState.DONE
    backend.clock.advance(10_000)
    assert backend.deliveries.claim(KEY, 60).state is ClaimState.DONE


def test_a_released_claim_can_be_claimed_again(backend: Ports) -> None:
    backend.deliveries.claim(KEY, 60)
    backend.deliveries.release(KEY)

    assert backend.deliveries.claim(KEY, 60).state is ClaimState.CLAIMED


def test_releasing_after_the_attempt_was_made_keeps_it_made(backend: Ports) -> None:
    backend.deliveries.claim(KEY, 60)
    backend.deliveries.mark_sent(KEY, {"statusCode": 202}, 60)
    backend.deliveries.release(KEY)
    backend.clock.advance(61)

    taken = backend.deliveries.claim(KEY, 60)
    assert (taken.state, taken.outcome) == (ClaimState.SENT, {"statusCode": 202})


def test_keys_are_independent(backend: Ports) -> None:
    backend.deliveries.claim(KEY, 60)
    backend.deliveries.complete(KEY)

    assert backend.deliveries.claim(KEY.replace("/1", "/2"), 60).state is ClaimState.CLAIMED


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    with pytest.raises(DependencyDown):
        backend.unreachable().deliveries.claim(KEY, 60)
