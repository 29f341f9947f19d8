"""The Pools port: slots taken up to the pool's limit with the execution that holds them, given
back once, counted exactly."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.model import Concurrency, Execution, new_id
from chalicelib.domain.model import ExecutionStatus as S
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


# concurrency keys ---------------------------------------------------------------------------------


def keyed(backend: Ports, key: str = "reports-t", limit: int = 2) -> Execution:
    return post(backend, concurrency=Concurrency(key, limit))[1]


def test_a_keyed_execution_takes_a_slot_of_its_key_with_its_pool_slot_up_to_the_key_limit(backend: Ports) -> None:
    executions = [keyed(backend) for _ in range(3)]

    taken = [backend.pools.take_slot(e, "wide", 0) for e in executions]

    assert taken == [Slot.TAKEN, Slot.TAKEN, Slot.KEY_FULL]
    assert backend.pools.keys_in_use() == {"reports-t": (2, 2)}
    assert backend.pools.pool_running(["wide"]) == {"wide": 2}  # the one left waiting took no pool slot
    waiting = backend.executions.get_execution(executions[2].job_id, executions[2].execution_id)
    assert waiting is not None and waiting.pool is None


def test_a_full_pool_is_told_before_a_full_key(backend: Ports) -> None:
    first, second = keyed(backend, limit=1), keyed(backend, limit=1)
    backend.pools.take_slot(first, "one", 1)

    assert backend.pools.take_slot(second, "one", 1) is Slot.FULL


def test_keys_are_counted_apart_and_a_job_without_one_takes_none(backend: Ports) -> None:
    plain = post(backend)[1]
    backend.pools.take_slot(keyed(backend, "a", 1), "p", 0)
    backend.pools.take_slot(keyed(backend, "b", 1), "p", 0)

    assert backend.pools.take_slot(plain, "p", 0) is Slot.TAKEN
    assert backend.pools.keys_in_use() == {"a": (1, 1), "b": (1, 1)}


def test_giving_back_the_slot_gives_back_the_keys_once(backend: Ports) -> None:
    execution, waiting = keyed(backend, limit=1), keyed(backend, limit=1)
    backend.pools.take_slot(execution, "p", 0)

    assert backend.pools.release_slot(execution) is True
    assert backend.pools.release_slot(execution) is False
    assert backend.pools.keys_in_use() == {}
    assert backend.pools.take_slot(waiting, "p", 0) is Slot.TAKEN


def test_an_ending_that_frees_the_slot_frees_the_keys_too(backend: Ports) -> None:
    execution = keyed(backend, limit=1)
    backend.pools.take_slot(execution, "p", 0)
    held = backend.executions.get_execution(execution.job_id, execution.execution_id)
    assert held is not None
    launched = backend.executions.transition(held, S.PULLING, task_arn="arn:aws:ecs:r:1:task/c/k")
    assert launched is not None

    assert backend.executions.transition(launched[0], S.DONE, release_slot=True, exit_code=0) is not None
    assert backend.pools.keys_in_use() == {} and backend.pools.pool_running(["p"]) == {"p": 0}


def test_key_slots_taken_at_once_never_exceed_the_limit(backend: Ports) -> None:
    executions = [keyed(backend, "hot", 3) for _ in range(10)]

    taken = at_once(10, lambda i: backend.pools.take_slot(executions[i], "open", 0))

    assert taken.count(Slot.TAKEN) == 3 and taken.count(Slot.KEY_FULL) == 7
    assert backend.pools.keys_in_use() == {"hot": (3, 3)} and backend.pools.pool_running(["open"]) == {"open": 3}


def test_a_key_is_recounted_only_from_the_count_seen(backend: Ports) -> None:
    backend.pools.take_slot(keyed(backend, "leaky", 4), "p", 0)

    assert backend.pools.recount_key("leaky", 5, 0, 4) is False  # it changed since it was seen
    assert backend.pools.recount_key("leaky", 1, 0, 4) is True
    assert backend.pools.keys_in_use() == {}
    assert backend.pools.recount_key("lost", 0, 2, 3) is True  # a count below its holders is raised too
    assert backend.pools.keys_in_use() == {"lost": (2, 3)}
