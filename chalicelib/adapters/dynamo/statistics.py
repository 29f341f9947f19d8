"""Statistics counters on sharded items of the tasks table: jobs, scheduled jobs and executions
by status, for /status."""
from __future__ import annotations

import random

from botocore.exceptions import BotoCoreError, ClientError

from ...domain.errors import DependencyDown
from ...observability import logger
from .tables import STATS_PREFIX, TASKS_COUNTER_ID, Tables, get_or_none

STATS_SHARDS = 8  # counters are spread so that no single item is hot


class DynamoStatistics:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def bump(self, **deltas: int) -> None:
        """Add to the counters. Written after the transaction they describe, on one of several
        items, so that no item is hot and no transaction conflicts on them; a container that
        dies in between leaves a count off by one."""
        deltas = {k: v for k, v in deltas.items() if v}
        if not deltas:
            return
        names = {f"#k{i}": key for i, key in enumerate(deltas)}
        values = {f":v{i}": {"N": str(value)} for i, value in enumerate(deltas.values())}
        try:
            self._tables.connection().client.update_item(
                TableName=self._tables.settings.tasks_table,
                Key={"taskId": {"S": f"{STATS_PREFIX}{random.randrange(STATS_SHARDS)}"}},
                UpdateExpression="ADD " + ", ".join(f"#k{i} :v{i}" for i in range(len(deltas))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception:  # noqa: BLE001 - statistics must never fail the write they describe
            logger.warning("statistics counter not updated", extra={"deltas": deltas})

    def stats(self) -> dict[str, int]:
        table = self._tables.settings.tasks_table

        def read() -> dict[str, int]:
            keys = [{"taskId": {"S": f"{STATS_PREFIX}{i}"}} for i in range(STATS_SHARDS)]
            response = self._tables.connection().client.batch_get_item(
                RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
            totals: dict[str, int] = {}
            for item in response.get("Responses", {}).get(table, []):
                for name, value in item.items():
                    if name != "taskId" and "N" in value:
                        totals[name] = totals.get(name, 0) + int(value["N"])
            counter = get_or_none(self._tables.Task, TASKS_COUNTER_ID)
            totals["tasks"] = int(counter.total) if counter is not None and counter.total else 0
            return totals

        def guarded() -> dict[str, int]:
            try:
                return read()
            except (BotoCoreError, ClientError) as error:  # the raw client's, not PynamoDB's
                raise DependencyDown(f"DynamoDB: {error}") from error

        return self._tables.guard(guarded)
