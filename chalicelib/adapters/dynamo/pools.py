"""Pool slots on DynamoDB: exact running counts of pools and concurrency keys, taken and released
in transactions with the execution that holds the slot."""
from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import TransactWriteError

from ...domain.lifecycle import LAUNCHABLE
from ...domain.model import Concurrency, Execution
from ...ports import Slot
from .mapping import PREPARED
from .tables import KEY_BUCKET, KEY_PREFIX, POOL_PREFIX, Tables, get_or_none
from .transactions import CONDITION_FAILED, cancellation_reasons, refused_item, retry_on_contention, update_if


class DynamoPools:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def take_slot(self, execution: Execution, pool: str, max_running: int) -> Slot:
        TaskM, ExecM = self._t.Task, self._t.Execution
        pool_condition = None
        if max_running > 0:
            pool_condition = TaskM.running.does_not_exist() | (TaskM.running < max_running)

        key = execution.concurrency
        generation = (ExecM.launches == execution.launches) if execution.launches else (
            ExecM.launches.does_not_exist() | (ExecM.launches == 0))

        def attempt() -> Slot:
            try:
                with self._t.transact() as tx:
                    tx.update(TaskM(task_id=POOL_PREFIX + pool), actions=[TaskM.running.add(1)],
                              condition=pool_condition)
                    # keyed `prepared`: the holders the reconciler recounts, apart from those waiting
                    tx.update(ExecM(execution.job_id, execution.execution_id),
                              actions=[ExecM.pool.set(pool), ExecM.worklist.set(PREPARED)],
                              condition=ExecM.status.is_in(*[s.value for s in LAUNCHABLE]) & ExecM.pool.does_not_exist()
                              & generation)
                    if key is not None:  # item 2: the key's count, listed in its bucket of by_seq
                        tx.update(TaskM(task_id=KEY_PREFIX + key.key),
                                  actions=[TaskM.running.add(1), TaskM.max_running.set(key.limit),
                                           TaskM.list_bucket.set(KEY_BUCKET), TaskM.seq.set(0)],
                                  condition=TaskM.running.does_not_exist() | (TaskM.running < key.limit))
                return Slot.TAKEN
            except TransactWriteError as error:
                reasons = cancellation_reasons(error)
                if reasons[1:2] == [CONDITION_FAILED]:
                    return Slot.MOVED  # whether or not the pool is full: this execution needs no slot
                if reasons[:1] == [CONDITION_FAILED]:
                    return Slot.FULL
                if reasons[2:3] == [CONDITION_FAILED]:
                    return Slot.KEY_FULL
                raise

        return self._t.guard(lambda: retry_on_contention(attempt))

    def release_slot(self, execution: Execution) -> bool:
        """The write is conditional on the slot still being held, so a snapshot that names its
        pool saves a read; one that does not is read again (it may have taken one since)."""
        TaskM, ExecM = self._t.Task, self._t.Execution
        pool, key = execution.pool, execution.concurrency
        if pool is None:
            current = self._t.guard(lambda: get_or_none(ExecM, execution.job_id, execution.execution_id))
            if current is None or current.pool is None:
                return False
            pool, key = current.pool, Concurrency(**current.concurrency) if current.concurrency else None

        # A final execution leaves the reconciler's worklist with its slot.
        done = execution.status.is_final and not execution.announcing
        actions = [ExecM.pool.remove(), ExecM.worklist.remove()] if done else [ExecM.pool.remove()]

        def attempt() -> bool:
            try:
                with self._t.transact() as tx:
                    tx.update(ExecM(execution.job_id, execution.execution_id), actions=actions,
                              condition=ExecM.pool == pool)
                    tx.update(TaskM(task_id=POOL_PREFIX + pool), actions=[TaskM.running.add(-1)])
                    if key is not None:
                        tx.update(TaskM(task_id=KEY_PREFIX + key.key), actions=[TaskM.running.add(-1)])
                return True
            except TransactWriteError as error:
                if refused_item(error) == 0:
                    return False
                raise

        return self._t.guard(lambda: retry_on_contention(attempt))

    def pool_running(self, names: Sequence[str]) -> dict[str, int]:
        def read() -> dict[str, int]:
            result = {name: 0 for name in names}
            for item in self._t.Task.batch_get([POOL_PREFIX + n for n in names]):
                result[item.task_id[len(POOL_PREFIX):]] = int(item.running or 0)
            return result

        return self._t.guard(read)

    def recount(self, pool: str, seen: int, holders: int) -> bool:
        TaskM = self._t.Task
        condition = (TaskM.running == seen) if seen else (TaskM.running.does_not_exist() | (TaskM.running == 0))

        return self._t.guard(lambda: update_if(TaskM(task_id=POOL_PREFIX + pool), [TaskM.running.set(holders)],
                                               condition))

    def keys_in_use(self, limit: int = 1000) -> dict[str, tuple[int, int]]:
        TaskM = self._t.Task

        def read() -> dict[str, tuple[int, int]]:
            found: dict[str, tuple[int, int]] = {}
            for item in TaskM.by_seq.query(KEY_BUCKET, filter_condition=TaskM.running != 0):
                found[item.task_id[len(KEY_PREFIX):]] = (int(item.running or 0), int(item.max_running or 0))
                if len(found) >= limit:
                    break
            return found

        return self._t.guard(read)

    def recount_key(self, key: str, seen: int, holders: int, limit: int) -> bool:
        TaskM = self._t.Task
        condition = (TaskM.running == seen) if seen else (TaskM.running.does_not_exist() | (TaskM.running == 0))
        actions = [TaskM.running.set(holders), TaskM.max_running.set(limit), TaskM.list_bucket.set(KEY_BUCKET),
                   TaskM.seq.set(0)]
        return self._t.guard(lambda: update_if(TaskM(task_id=KEY_PREFIX + key), actions, condition))
