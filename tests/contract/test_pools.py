"""The Pools port: slots taken up to the pool's limit with the execution that holds them, given
back once, counted exactly."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.model import new_id
from chalicelib.ports import Slot
from tests.contract.support import Ports, at_once, post


def test_slots_are_taken_up_to_the_limit_and_the_next_waits(backend: Ports) -> None:
    executions = [post(backend)[1] for _ in range(3)]

    taken = [backend.pools.take_slot(e, "small", 2) for e in executions]

    assert taken == [Slot.TAKEN, Slot.TAKEN, Slot.FULL]
    assert backend.pools.pool_running(["small"]) == {"small": 2}
    holders = [backend.executions.get_execution(e.job_id, e.execution_id) for e in executions]
    assert [h.pool if h else "missing" for h in holders] == ["small", "small", None]


def test_a_slot_given_back_lets_the_waiting_execution_take_it(backend: Ports) -> None:
    first, second, waiting = (post(backend)[1] for _ in range(3))
    backend.pools.take_slot(first, "small", 2)
    backend.pools.take_slot(second, "small", 2)

    assert backend.pools.release_slot(first) is True
    assert backend.pools.take_slot(waiting, "small", 2) is Slot.TAKEN
    assert backend.pools.pool_running(["small"]) == {"small": 2}


def test_a_slot_is_given_back_once(backend: Ports) -> None:
    _, execution = post(backend)
    backend.pools.take_slot(execution, "once", 1)

    assert backend.pools.release_slot(execution) is True
    assert backend.pools.release_slot(execution) is False
    assert backend.pools.pool_running(["once"]) == {"once": 0}
    stored = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert stored is not None and stored.pool is None


def test_a_snapshot_that_does_not_name_the_pool_still_gives_the_slot_back(backend: Ports) -> None:
    _, execution = post(backend)  # read before the slot was taken: its pool is None
    backend.pools.take_slot(execution, "stale", 1)

    assert backend.pools.release_slot(execution) is True
    assert backend.pools.pool_running(["stale"]) == {"stale": 0}


def test_an_execution_that_holds_no_slot_gives_nothing_back(backend: Ports) -> None:
    _, execution = post(backend)
    other = post(backend)[1]
    backend.pools.take_slot(other, "busy", 0)

    assert backend.pools.release_slot(execution) is False
    assert backend.pools.pool_running(["busy"]) == {"busy": 1}


def test_an_execution_that_holds_a_slot_already_has_moved(backend: Ports) -> None:
    _, execution = post(backend)
    backend.pools.take_slot(execution, "twice", 5)

    assert backend.pools.take_slot(execution, "twice", 5) is Slot.MOVED
    assert backend.pools.pool_running(["twice"]) == {"twice": 1}


@pytest.mark.parametrize("status", [S.PULLING, S.RUNNING, S.DONE, S.STOPPED])
def test_an_execution_that_is_no_longer_launchable_has_moved(backend: Ports, status: S) -> None:
    _, execution = post(backend, status=status)

    assert backend.pools.take_slot(execution, "late", 5) is Slot.MOVED
    assert backend.pools.pool_running(["late"]) == {"late": 0}


def test_moved_wins_over_full(backend: Ports) -> None:
    holder, running = post(backend)[1], post(backend, status=S.RUNNING)[1]
    backend.pools.take_slot(holder, "tight", 1)

    assert backend.pools.take_slot(running, "tight", 1) is Slot.MOVED


def test_an_execution_that_does_not_exist_has_moved(backend: Ports) -> None:
    _, execution = post(backend)
    ghost = execution.with_changes(execution_id=new_id())

    assert backend.pools.take_slot(ghost, "ghosts", 5) is Slot.MOVED
    assert backend.pools.pool_running(["ghosts"]) == {"ghosts": 0}


def test_a_pool_without_a_limit_takes_every_slot_and_counts_them(backend: Ports) -> None:
    executions = [post(backend)[1] for _ in range(4)]

    assert {backend.pools.take_slot(e, "open", 0) for e in executions} == {Slot.TAKEN}
    assert backend.pools.pool_running(["open", "never-used"]) == {"open": 4, "never-used": 0}


def test_slots_taken_at_once_never_exceed_the_limit(backend: Ports) -> None:
    executions = [post(backend)[1] for _ in range(12)]

    taken = at_once(12, lambda i: backend.pools.take_slot(executions[i], "contended", 5))

    assert taken.count(Slot.TAKEN) == 5 and taken.count(Slot.FULL) == 7
    assert backend.pools.pool_running(["contended"]) == {"contended": 5}


def test_slots_given_back_at_once_are_each_given_back_once(backend: Ports) -> None:
    executions = [post(backend)[1] for _ in range(4)]
    for execution in executions:
        backend.pools.take_slot(execution, "drained", 0)

    released = at_once(8, lambda i: backend.pools.release_slot(executions[i % 4]))

    assert released.count(True) == 4
    assert backend.pools.pool_running(["drained"]) == {"drained": 0}


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    _, execution = post(backend)
    gone = backend.unreachable()

    with pytest.raises(DependencyDown):
        gone.pools.take_slot(execution, "p", 1)
    with pytest.raises(DependencyDown):
        gone.pools.pool_running(["p"])


def test_a_launch_message_of_an_older_generation_takes_no_slot(backend: Ports) -> None:
    _, execution = post(backend)  # generation 0, as the first launch message says
    renewed = backend.executions.renew_launch(execution, due_at=1.0)
    assert renewed is not None and renewed.launches == 1

    assert backend.pools.take_slot(execution, "gen", 0) is Slot.MOVED  # the older message's snapshot
    assert backend.pools.pool_running(["gen"]) == {"gen": 0}
    assert backend.pools.take_slot(renewed, "gen", 0) is Slot.TAKEN
