"""Statistics counters on sharded items of the tasks table: tasks, jobs, scheduled jobs and
executions by status, for /status. Each change is an `ADD` inside the transaction of the write it
counts, so the counts are exact: a write that is refused, retried or never made counts nothing."""
from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.expressions.operand import Path
from pynamodb.transactions import TransactWrite

from ...domain.errors import DependencyDown
from ...domain.model import ExecutionStatus
from .tables import STATS_PREFIX, Tables

# Every write transaction adds to one shard, picked at random on each attempt: two transactions
# that meet on one item conflict (TransactionConflict, retried), so the shards keep that rare
# under many writers. Reading them all is one BatchGetItem (at most 100 keys). The number may
# grow, never shrink: the counts are the sum over the shards, and 0..7 held them before.
STATS_SHARDS = 64
NAMES = ("tasks", "jobs", "scheduled", *(status.value for status in ExecutionStatus))


class DynamoStatistics:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def count(self, tx: TransactWrite, deltas: Mapping[str, int]) -> None:
        """Add `deltas` to the counters as one more item of `tx`, the transaction that makes the
        change they count. Add it last: refusals are read by the index of the items before it."""
        changed = {name: delta for name, delta in deltas.items() if delta}
        if changed:
            shard = self._tables.Task(task_id=f"{STATS_PREFIX}{random.randrange(STATS_SHARDS)}")
            tx.update(shard, actions=[Path(name).add(delta) for name, delta in changed.items()])

    def stats(self) -> dict[str, int]:
        table = self._tables.settings.tasks_table

        def read() -> dict[str, int]:
            keys: list[Any] = [{"taskId": {"S": f"{STATS_PREFIX}{i}"}} for i in range(STATS_SHARDS)]
            totals = dict.fromkeys(NAMES, 0)
            for attempt in range(10):
                response = self._tables.connection().client.batch_get_item(
                    RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
                for item in response.get("Responses", {}).get(table, []):
                    for name, value in item.items():
                        if name != "taskId" and "N" in value:
                            totals[name] = totals.get(name, 0) + int(value["N"])
                # Under throttling DynamoDB answers part of a batch: a sum without every shard is wrong.
                keys = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
                if not keys:
                    return totals
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
            raise DependencyDown("DynamoDB: the statistics could not be read whole, try again")

        def guarded() -> dict[str, int]:
            try:
                return read()
            except (BotoCoreError, ClientError) as error:  # the raw client's, not PynamoDB's
                raise DependencyDown.of("DynamoDB", error) from error

        return self._tables.guard(guarded)
