"""The delivery log on DynamoDB: each notification (execution, notification, attempt) is sent
once, whatever the notify queue redelivers. Layout: docs/notifications.md."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import DependencyDown
from ..ports import Claim, ClaimState

_SENDING = "sending"
SENT, DONE = ClaimState.SENT.value, ClaimState.DONE.value


class DeliveryLog:
    """One item per delivery key (execution, notification, attempt) in a small table:
    `sending` (with a lease) → `sent` (with the attempt's outcome) → `done`. Every step is a
    conditional write, so a duplicate queue delivery finds the key taken and sends nothing.
    Items expire (TTL) after `keep_days`."""

    def __init__(self, client: Any, table: str, clock: Callable[[], float] = time.time, keep_days: float = 14) -> None:
        self._ddb = client
        self._table = table
        self._clock = clock
        self._keep = keep_days * 86400

    def _key(self, key: str) -> dict[str, Any]:
        return {"deliveryKey": {"S": key}}

    def claim(self, key: str, lease_seconds: float) -> Claim:
        at = self._clock()
        for _ in range(3):
            try:
                response = self._ddb.update_item(
                    TableName=self._table, Key=self._key(key),
                    UpdateExpression="SET leaseUntil = :lease, expiresAt = if_not_exists(expiresAt, :expires), "
                                     "#state = if_not_exists(#state, :sending)",
                    # new, or left behind by a worker whose lease ran out
                    ConditionExpression="attribute_not_exists(deliveryKey) OR (#state <> :done AND leaseUntil < :now)",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={":lease": {"N": repr(round(at + lease_seconds, 3))},
                                               ":expires": {"N": str(int(at + self._keep))},
                                               ":sending": {"S": _SENDING}, ":done": {"S": DONE},
                                               ":now": {"N": repr(round(at, 3))}},
                    ReturnValues="ALL_OLD",
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise DependencyDown.of("DynamoDB", error) from error
            except BotoCoreError as error:
                raise DependencyDown.of("DynamoDB", error) from error
            else:
                old = response.get("Attributes") or {}
                if old.get("state", {}).get("S") == SENT:
                    return Claim(ClaimState.SENT, json.loads(old.get("outcome", {}).get("S") or "{}"))
                return Claim(ClaimState.CLAIMED)
            current = self._get(key)
            if current is None:
                continue  # released or expired in between: claim again
            return Claim(ClaimState.DONE) if current.get("state", {}).get("S") == DONE else Claim(ClaimState.BUSY)
        return Claim(ClaimState.BUSY)

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] | None = self._ddb.get_item(TableName=self._table, Key=self._key(key),
                                                             ConsistentRead=True).get("Item")
            return item
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown.of("DynamoDB", error) from error

    def _set(self, key: str, expression: str, values: dict[str, Any]) -> None:
        try:
            self._ddb.update_item(TableName=self._table, Key=self._key(key), UpdateExpression=expression,
                                  ExpressionAttributeNames={"#state": "state"}, ExpressionAttributeValues=values)
        except (BotoCoreError, ClientError) as error:
            raise DependencyDown.of("DynamoDB", error) from error

    def mark_sent(self, key: str, outcome: dict[str, Any], lease_seconds: float) -> None:
        """The attempt was made: keep its outcome, so a worker that takes over never sends again."""
        self._set(key, "SET #state = :sent, outcome = :outcome, leaseUntil = :lease",
                  {":sent": {"S": SENT}, ":outcome": {"S": json.dumps(outcome)},
                   ":lease": {"N": repr(round(self._clock() + lease_seconds, 3))}})

    def complete(self, key: str) -> None:
        self._set(key, "SET #state = :done", {":done": {"S": DONE}})

    def release(self, key: str) -> None:
        """Give a claim back after a failure that should be tried again (nothing was sent)."""
        try:
            self._ddb.delete_item(TableName=self._table, Key=self._key(key),
                                  ConditionExpression="#state = :sending",
                                  ExpressionAttributeNames={"#state": "state"},
                                  ExpressionAttributeValues={":sending": {"S": _SENDING}})
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise DependencyDown.of("DynamoDB", error) from error
        except BotoCoreError as error:
            raise DependencyDown.of("DynamoDB", error) from error

    def ping(self) -> None:
        self._ddb.describe_table(TableName=self._table)


def create_deliveries_table(client: Any, table: str) -> None:
    """The delivery log's table (tests and the local runtime; in AWS the template creates it)."""
    existing = client.list_tables().get("TableNames", [])
    if table in existing:
        return
    client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "deliveryKey", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "deliveryKey", "KeyType": "HASH"}],
    )
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    client.update_time_to_live(TableName=table,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"})
