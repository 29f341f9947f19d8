"""Executions on DynamoDB: reads, the status compare-and-set every transition goes through
(its condition derived from the lifecycle table), and field updates."""
from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, Unpack

from pynamodb.exceptions import TransactWriteError

from ...domain import timeline as timelines
from ...domain.errors import DependencyDown, all_readable, read_each
from ...domain.lifecycle import LAUNCHABLE, sources
from ...domain.model import FINAL_STATUSES, Execution, ExecutionStatus, Job, Page, now, seq_range
from ...ports import ExecutionChanges, MakeExecution
from . import listing
from .jobs import set_is
from .mapping import (
    HELD,
    PREPARED,
    check_at,
    execution_from_item,
    execution_to_item,
    job_from_item,
    status_shard,
    worklist_key,
    worklist_keys,
)
from .statistics import DynamoStatistics
from .tables import KEY_PREFIX, POOL_PREFIX, Tables, get_or_none
from .transactions import CONTENTION_ATTEMPTS, contention, refused_item, update_if


def _actions(model: Any, fields: dict[str, Any]) -> list[Any]:
    return [getattr(model, name).remove() if value is None else getattr(model, name).set(_stored(value))
            for name, value in fields.items()]


def _key(item: Any) -> str:
    """A stored execution's key, for the log of one that cannot be read."""
    return f"{getattr(item, 'job_id', '?')}/{getattr(item, 'execution_id', '?')}"


def _stored(value: Any) -> Any:
    return set(value) if isinstance(value, frozenset) else value


class DynamoExecutions:
    def __init__(self, tables: Tables, statistics: DynamoStatistics) -> None:
        self._t = tables
        self._statistics = statistics

    def get_execution(self, job_id: str, execution_id: str) -> Execution | None:
        item = self._t.guard(lambda: get_or_none(self._t.Execution, job_id, execution_id))
        return execution_from_item(item) if item is not None else None

    def list_executions(self, job_id: str, page: int, per_page: int, total: int | None = None) -> Page:
        ExecM = self._t.Execution

        def read() -> Page:
            count = total
            if count is None:
                job = get_or_none(self._t.Job, job_id)
                count = int(job.execution_count or 0) if job is not None else 0
            low, high = seq_range(page, per_page, count, newest_first=True)
            items = []
            if low <= high:
                query = ExecM.by_seq.query(job_id, ExecM.seq.between(low, high), scan_index_forward=False)
                items = [execution_from_item(i) for i in query]
            return Page(items=items, page=page, per_page=per_page, total=count)

        return self._t.guard(read)

    def list_all_executions(self, statuses: frozenset[ExecutionStatus], since: float | None, task_prefix: str | None,
                            page: int, per_page: int) -> Page:
        return self._t.guard(lambda: listing.list_all_executions(self._t, statuses, since, task_prefix, page, per_page))

    def find_executions(self, execution_ids: Sequence[str]) -> dict[str, Execution]:
        return self._t.guard(lambda: listing.find_executions(self._t, execution_ids))

    def active_executions(self, status: ExecutionStatus, limit: int = 500) -> list[Execution]:
        ExecM = self._t.Execution

        def read() -> list[Execution]:
            found, unreadable = read_each((i for key in worklist_keys(status) for i in ExecM.by_active.query(key, limit=limit)),
                                          execution_from_item, _key)
            return all_readable(sorted(found, key=lambda e: e.created_at)[:limit], unreadable)

        return self._t.guard(read)

    def overdue_launches(self, before: float, limit: int) -> list[Execution]:
        """Executions that hold a slot are keyed `prepared`, so the partitions of the launchable
        statuses hold only those that wait for one."""
        ExecM = self._t.Execution

        def read() -> list[Execution]:
            found, unreadable = read_each((i for status in sorted(LAUNCHABLE)
                                           for i in ExecM.by_check.query(status.value, ExecM.check_at < before, limit=limit)),
                                          execution_from_item, _key)
            return all_readable(sorted(found, key=lambda e: e.due_at if e.due_at is not None else e.created_at)[:limit],
                                unreadable)

        return self._t.guard(read)

    def prepared_executions(self, limit: int = 500) -> list[Execution]:
        """An execution whose slot was given back before it was launched (no caller does) keeps
        its key, and is listed here without one: it is then resent from here if its launch is lost."""
        ExecM = self._t.Execution
        return self._t.guard(lambda: all_readable(*read_each(ExecM.by_active.query(PREPARED, limit=limit),
                                                             execution_from_item, _key)))

    def transition(self, execution: Execution, target: ExecutionStatus, *, follow_up: MakeExecution | None = None,
                   release_slot: bool = False, unless_job_stopped: bool = False, job: Job | None = None,
                   **fields: Unpack[ExecutionChanges]) -> tuple[Execution, Execution | None] | None:
        """A compare-and-set on the exact status the write starts from: first the caller's
        snapshot (no read when it is current, the usual case), then, if the item has moved on,
        its stored status when the lifecycle still allows the move. The counters move in the same
        transaction, from the status it conditions on, and the follow-up is built only for a move
        that happens. The write conditions on the snapshot's slot and `watched` too, so what the
        caller does next with the moved execution rests on what the store held. A refused write
        answers the item as it is (ReturnValuesOnConditionCheckFailure), so looking again costs
        no read; `job`, the caller's read of the job, saves the follow-up's first one."""
        if follow_up is not None and unless_job_stopped:
            raise TypeError("a transition that adds a retry cannot also check that its job is not stopped")
        ExecM, JobM, TaskM = self._t.Execution, self._t.Job, self._t.Task
        allowed = sources(target)
        entry = fields.pop("timeline_entry", None)  # the write adds it to the timeline it finds
        changes = _actions(ExecM, dict(fields))

        snapshot = job  # the caller's read of the job serves the first attempt only

        def attempt(current: Execution) -> tuple[Execution, Execution | None]:
            nonlocal snapshot
            stored = None
            if follow_up is not None:
                stored = snapshot or self._job(current.job_id)
            snapshot = None
            added = None
            freed = current.pool if release_slot else None
            # The worklist key depends on the slot the execution holds: the write conditions on
            # the snapshot's slot too, so a slot taken meanwhile is never left off the worklist.
            key = worklist_key(target, None if freed else current.pool,
                            bool(fields.get("announcing", current.announcing)))
            actions = [ExecM.status.set(target.value), ExecM.worklist.set(key) if key else ExecM.worklist.remove(),
                       # its entry in the listing across tasks moves with the status, in this write
                       ExecM.status_shard.set(status_shard(target, current.execution_id)), ExecM.status_at.set(now())]
            if target not in LAUNCHABLE:
                actions.append(ExecM.check_at.remove())  # off the worklist of launches
            if freed:
                actions.append(ExecM.pool.remove())
            slot = ExecM.pool == current.pool if current.pool is not None else ExecM.pool.does_not_exist()
            watched = (ExecM.watched == True) if current.watched else ExecM.watched.does_not_exist()  # noqa: E712
            timeline = current.timeline
            if entry is not None:
                # Extends the timeline the write finds: one written meanwhile refuses it, and the
                # next attempt starts from the refused item.
                timeline = timelines.add(current.timeline, entry)
                actions.append(ExecM.timeline.set(list(timeline)))
                watched &= (ExecM.timeline == list(current.timeline)) if current.timeline else (
                    ExecM.timeline.does_not_exist())
            tx = self._t.transact()
            if unless_job_stopped:  # condition checks come first in the transaction: item 0
                tx.condition_check(JobM, current.job_id,
                                   condition=JobM.stopped.does_not_exist() | (JobM.stopped == False))  # noqa: E712
            tx.update(ExecM(current.job_id, current.execution_id), actions=actions + changes,
                      condition=(ExecM.status == current.status.value) & slot & watched, return_values="ALL_OLD")
            if freed:
                tx.update(TaskM(task_id=POOL_PREFIX + freed), actions=[TaskM.running.add(-1)])
                if current.concurrency is not None:
                    tx.update(TaskM(task_id=KEY_PREFIX + current.concurrency.key), actions=[TaskM.running.add(-1)])
            if follow_up is not None and stored is not None and not stored.stopped:
                count = stored.execution_count
                active = stored.active
                added = follow_up(stored).with_changes(seq=count + 1)
                ended = {current.execution_id} if target in FINAL_STATUSES else set()
                remaining = (active - ended) | {added.execution_id}
                tx.update(JobM(job_id=current.job_id),
                          actions=[JobM.execution_count.set(count + 1), JobM.active.set(remaining),
                                   JobM.retry_count.add(1)],
                          condition=(JobM.execution_count == count) & set_is(JobM.active, active)
                          & (JobM.stopped.does_not_exist() | (JobM.stopped == False)))  # noqa: E712
                tx.save(execution_to_item(ExecM, added, count + 1))
            elif target in FINAL_STATUSES:
                tx.update(JobM(job_id=current.job_id), actions=[JobM.active.delete({current.execution_id})])
            deltas = {current.status.value: -1, target.value: 1}  # from the status the write conditions on
            if added is not None:
                deltas[added.status.value] = deltas.get(added.status.value, 0) + 1
            self._statistics.count(tx, deltas)
            try:
                tx._commit()  # what leaving `with` does
            except TransactWriteError as error:
                # Items are sent condition checks first, then puts, then updates.
                error.execution_index = int(unless_job_stopped) + int(added is not None)  # type: ignore[attr-defined]
                raise
            moved = current.with_changes(status=target, timeline=timeline, **fields)
            return (moved.with_changes(pool=None) if freed else moved), added

        def move() -> tuple[Execution, Execution | None] | None:
            current: Execution | None = execution
            fresh = False
            for _ in range(CONTENTION_ATTEMPTS):
                if current is None:
                    return None
                if current.status not in allowed:
                    if fresh:
                        return None  # it has moved on: a duplicate or late event
                    current, fresh = self._read(execution), True
                    continue
                try:
                    return attempt(current)
                except TransactWriteError as error:
                    refused = refused_item(error)  # 0: the execution moved; 1: its job changed meanwhile
                    if unless_job_stopped and refused == 0:
                        return None  # its job is stopped (the caller reads it to see why)
                    if refused is None:
                        if not contention(error):
                            raise
                        time.sleep(random.uniform(0, 0.01))
                    current, fresh = self._refused(error) or self._read(execution), True  # look again
            raise DependencyDown("DynamoDB: too much contention on the same execution, try again")

        return self._t.guard(move)

    def _refused(self, error: TransactWriteError) -> Execution | None:
        """The execution as the refused transaction found it, when DynamoDB answered it."""
        index = getattr(error, "execution_index", None)
        reasons = error.cancellation_reasons or []
        if index is None or index >= len(reasons) or reasons[index] is None:
            return None
        raw = reasons[index].raw_item
        if not raw:
            return None
        return execution_from_item(self._t.Execution.from_raw_data(raw))

    def _job(self, job_id: str) -> Job | None:
        item = get_or_none(self._t.Job, job_id)
        return job_from_item(item) if item is not None else None

    def _read(self, execution: Execution) -> Execution | None:
        item = get_or_none(self._t.Execution, execution.job_id, execution.execution_id)
        return execution_from_item(item) if item is not None else None

    def update_execution(self, execution: Execution, expected: frozenset[ExecutionStatus] | None = None,
                         **fields: Unpack[ExecutionChanges]) -> bool:
        ExecM = self._t.Execution
        actions = _actions(ExecM, {k: (v or None) if k == "announcing" else v for k, v in fields.items()})
        if "due_at" in fields and execution.status in LAUNCHABLE:
            actions.append(ExecM.check_at.set(check_at(execution.status, fields["due_at"], execution.created_at)))
        if fields.get("announcing") is False and execution.status.is_final and execution.pool is None:
            actions.append(ExecM.worklist.remove())  # announced, and no slot (none is taken once ended): off the worklist
        condition = ExecM.status.is_in(*[s.value for s in expected]) if expected else ExecM.job_id.exists()

        return self._t.guard(lambda: update_if(ExecM(execution.job_id, execution.execution_id), actions, condition))

    def renew_launch(self, execution: Execution, **fields: Unpack[ExecutionChanges]) -> Execution | None:
        ExecM = self._t.Execution
        entry = fields.pop("timeline_entry", None)  # the write adds it to the timeline it finds
        actions = [ExecM.launches.add(1), *_actions(ExecM, dict(fields))]
        # The generation the write conditions on makes the snapshot's timeline the stored one.
        timeline = execution.timeline if entry is None else timelines.add(execution.timeline, entry)
        if entry is not None:
            actions.append(ExecM.timeline.set(list(timeline)))
        if "due_at" in fields:  # the worklist of launches orders it by its new due time
            actions.append(ExecM.check_at.set(check_at(execution.status, fields["due_at"], execution.created_at)))
        generation = (ExecM.launches == execution.launches) if execution.launches else (
            ExecM.launches.does_not_exist() | (ExecM.launches == 0))
        condition = ExecM.status.is_in(*[s.value for s in LAUNCHABLE]) & generation

        if not self._t.guard(lambda: update_if(ExecM(execution.job_id, execution.execution_id), actions, condition)):
            return None
        return execution.with_changes(launches=execution.launches + 1, timeline=timeline, **fields)

    def held_executions(self, limit: int = 500) -> list[Execution]:
        """Keys left `held` on an execution whose slot was given back by a write that did not
        know it had ended are removed here, conditionally on it still holding none."""
        ExecM = self._t.Execution

        def read() -> list[Execution]:
            held: list[Execution] = []
            found, unreadable = read_each(ExecM.by_active.query(HELD, limit=limit), execution_from_item, _key)
            for execution in found:
                if execution.pool is not None or execution.announcing:
                    held.append(execution)
                    continue
                update_if(ExecM(execution.job_id, execution.execution_id), [ExecM.worklist.remove()],
                          (ExecM.worklist == HELD) & ExecM.pool.does_not_exist() & ExecM.announcing.does_not_exist())
            return all_readable(held, unreadable)

        return self._t.guard(read)

    def record_notification(self, job_id: str, execution_id: str, entry: dict[str, Any], keep: int = 50) -> None:
        ExecM = self._t.Execution

        def write() -> None:
            for _ in range(CONTENTION_ATTEMPTS):
                item = get_or_none(ExecM, job_id, execution_id)
                if item is None:
                    return
                current = list(item.notifications or [])
                entries = [*current, entry][-keep:]
                condition = (ExecM.notifications == current) if current else ExecM.notifications.does_not_exist()
                if update_if(ExecM(job_id, execution_id), [ExecM.notifications.set(entries)], condition):
                    return
            raise DependencyDown("DynamoDB: too much contention on the execution's notifications")

        self._t.guard(write)
