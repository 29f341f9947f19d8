"""Listings across tasks: executions by status and the time they entered it (newest first, by
status, since, task prefix, in pages counted up to the listing's depth), executions by id alone,
and tasks by id prefix."""
from __future__ import annotations

import time

import pytest

from chalicelib.domain.listing import ListedExecution
from chalicelib.domain.model import Concurrency, Execution, new_id, now
from chalicelib.domain.model import ExecutionStatus as S
from tests.contract.support import Ports, post

EVERY = frozenset(S)


def listed(backend: Ports, statuses: frozenset[S] = EVERY, since: float | None = None, task: str | None = None,
           page: int = 1, per_page: int = 50) -> list[str]:
    found = backend.executions.list_all_executions(statuses, since, task, page, per_page)
    return [item.execution.execution_id for item in found.items]


def moved(backend: Ports, execution: Execution, *path: S) -> Execution:
    """The execution moved along `path`, each step a moment after the one before."""
    for status in path:
        time.sleep(0.005)  # the store's clock counts milliseconds: each write a time of its own
        result = backend.executions.transition(execution, status)
        assert result is not None
        execution = result[0]
    return execution


def test_executions_of_every_task_are_listed_newest_first_by_when_they_entered_their_status(backend: Ports) -> None:
    at = now() - 100
    first = post(backend, "across-a", created_at=at)[1]
    second = post(backend, "across-b", created_at=at + 1)[1]
    third = post(backend, "other-c", created_at=at + 2)[1]
    moved(backend, first, S.PULLING, S.RUNNING, S.FAILED)  # entered `failed` last: the newest

    found = backend.executions.list_all_executions(EVERY, None, None, 1, 50)

    assert [item.execution.execution_id for item in found.items] == [
        first.execution_id, third.execution_id, second.execution_id]
    assert found.total == 3
    head = found.items[0]
    assert isinstance(head, ListedExecution)
    assert (head.execution.status, head.execution.task_id, head.execution.job_id) == (
        S.FAILED, "across-a", first.job_id)
    assert head.status_at >= at + 2
    assert [item.status_at for item in found.items[1:]] == [at + 2, at + 1]  # an enqueued one's: its creation


def test_only_the_statuses_asked_are_listed(backend: Ports) -> None:
    enqueued = post(backend)[1]
    failed = moved(backend, post(backend)[1], S.PULLING, S.FAILED)
    done = moved(backend, post(backend)[1], S.PULLING, S.RUNNING, S.DONE)
    running = moved(backend, post(backend)[1], S.PULLING, S.RUNNING)

    assert listed(backend, frozenset({S.FAILED})) == [failed.execution_id]
    assert listed(backend, frozenset({S.DONE, S.FAILED, S.ENQUEUED})) == [
        done.execution_id, failed.execution_id, enqueued.execution_id]
    assert listed(backend, frozenset({S.RUNNING})) == [running.execution_id]
    assert listed(backend, frozenset({S.TIMEDOUT, S.PULLING})) == []


def test_an_execution_leaves_the_listing_of_the_status_it_left(backend: Ports) -> None:
    execution = post(backend)[1]
    assert listed(backend, frozenset({S.ENQUEUED})) == [execution.execution_id]

    moved(backend, execution, S.PULLING)

    assert listed(backend, frozenset({S.ENQUEUED})) == []
    assert listed(backend, frozenset({S.PULLING})) == [execution.execution_id]


def test_since_keeps_those_that_entered_their_status_at_or_after_it(backend: Ports) -> None:
    at = now() - 1000
    old = post(backend, created_at=at)[1]
    edge = post(backend, created_at=at + 10)[1]
    recent = post(backend, created_at=at + 20)[1]
    reborn = moved(backend, post(backend, created_at=at - 5000)[1], S.PULLING, S.FAILED)  # made long ago, failed now

    assert listed(backend, since=at + 10) == [reborn.execution_id, recent.execution_id, edge.execution_id]
    assert listed(backend, frozenset({S.ENQUEUED}), since=at + 10.001) == [recent.execution_id]
    assert old.execution_id in listed(backend, since=at)
    assert listed(backend, since=now() + 60) == []


def test_a_task_prefix_keeps_the_executions_of_tasks_whose_id_starts_with_it(backend: Ports) -> None:
    nightly = [post(backend, f"nightly-{n}")[1] for n in range(3)]
    post(backend, "night")  # shorter than the prefix
    post(backend, "daily-nightly")  # holds it, not at its start
    post(backend, "Nightly-0")  # ids are case-sensitive

    found = listed(backend, task="nightly-")

    assert sorted(found) == sorted(e.execution_id for e in nightly)
    assert listed(backend, task="nightly-1") == [nightly[1].execution_id]
    assert backend.executions.list_all_executions(EVERY, None, "nightly-", 1, 50).total == 3
    assert listed(backend, task="weekly") == []


def test_pages_follow_one_another_and_count_every_match(backend: Ports) -> None:
    at = now() - 100
    made = [post(backend, "paged", created_at=at + n)[1] for n in range(5)]
    post(backend, "unpaged", created_at=at + 10)
    newest_first = [e.execution_id for e in reversed(made)]

    pages = [backend.executions.list_all_executions(EVERY, None, "paged", n, 2) for n in (1, 2, 3, 4)]

    assert [[i.execution.execution_id for i in p.items] for p in pages] == [
        newest_first[0:2], newest_first[2:4], newest_first[4:], []]
    assert [(p.total, p.pages, p.has_prev, p.has_next) for p in pages[:3]] == [
        (5, 3, False, True), (5, 3, True, True), (5, 3, True, False)]


def test_the_total_is_counted_up_to_the_listings_depth(backend: Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.adapters.dynamo import listing
    from infra.local.sqlite import executions, jobs

    for module in (listing, executions, jobs):
        monkeypatch.setattr(module, "MAX_LISTED", 3)
    for n in range(5):
        moved(backend, post(backend, f"deep-{n}")[1], S.PULLING, S.FAILED)

    first = backend.executions.list_all_executions(frozenset({S.FAILED}), None, None, 1, 2)
    tasks = backend.jobs.list_tasks_by_prefix("deep-", 1, 2)

    assert (first.total, len(first.items)) == (3, 2)
    assert (tasks.total, [t.task_id for t in tasks.items]) == (3, ["deep-0", "deep-1"])


def test_executions_are_found_by_their_id_alone(backend: Ports) -> None:
    job, first = post(backend, "found-a")
    second = moved(backend, post(backend, "found-b")[1], S.PULLING, S.RUNNING)
    unknown = new_id()

    found = backend.executions.find_executions([second.execution_id, unknown, first.execution_id,
                                                second.execution_id])

    assert set(found) == {first.execution_id, second.execution_id}
    assert found[first.execution_id] == backend.executions.get_execution(job.job_id, first.execution_id)
    assert (found[second.execution_id].task_id, found[second.execution_id].status) == ("found-b", S.RUNNING)
    assert backend.executions.find_executions([unknown]) == {}


def test_tasks_are_listed_by_id_from_a_prefix_in_pages(backend: Ports) -> None:
    names = ["team:b", "team:a", "team:c.x", "team:c"]
    for name in names:
        post(backend, name)
        post(backend, name)  # a second job does not list its task twice
    post(backend, "teams")
    post(backend, "other")
    # pool and concurrency key counters live with the tasks: they are never listed
    keyed = post(backend, "team:keyed", concurrency=Concurrency("team:key", 1))[1]
    backend.pools.take_slot(keyed, "team:pool", 1)

    pages = [backend.jobs.list_tasks_by_prefix("team:", n, 2) for n in (1, 2, 3, 4)]

    assert [[t.task_id for t in p.items] for p in pages] == [
        ["team:a", "team:b"], ["team:c", "team:c.x"], ["team:keyed"], []]
    assert [(p.total, p.pages, p.has_next) for p in pages[:3]] == [(5, 3, True), (5, 3, True), (5, 3, False)]
    task = pages[0].items[0]
    assert (task.jobs_count, task.seq) == (2, 2)
    assert [t.task_id for t in backend.jobs.list_tasks_by_prefix("team:c", 1, 10).items] == ["team:c", "team:c.x"]
    assert backend.jobs.list_tasks_by_prefix("nobody", 1, 10).total == 0
