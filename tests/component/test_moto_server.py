"""The aws backend's emulator keeps concurrent DynamoDB writes: a cancelled transaction never
undoes what another request wrote while it ran (moto alone does, see infra/local/moto_server.py)."""
from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_server

REGION = "us-east-1"


@pytest.fixture
def dynamodb() -> Any:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName="items", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        client.put_item(TableName="items", Item={"k": {"S": "taken"}})
        yield client


def test_a_cancelled_transaction_keeps_what_another_request_wrote_meanwhile(dynamodb, monkeypatch):
    """The interleaving is forced: while the refused transaction holds its backup, another
    request writes an item. Serialized, that write waits for the transaction to end; unserialized
    (moto alone) it lands inside the window and the rollback erases it."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    moto_server.serialize_dynamodb()
    backup_taken, written = threading.Event(), threading.Event()
    real_copy = models.copy

    class Pausing:
        def deepcopy(self, value: Any, memo: Any = None) -> Any:
            copied = real_copy.deepcopy(value, memo)
            if isinstance(value, Table) and not backup_taken.is_set():
                backup_taken.set()
                written.wait(timeout=1.0)  # the other write, unless it has to wait for us
            return copied

        def __getattr__(self, name: str) -> Any:
            return getattr(real_copy, name)

    monkeypatch.setattr(models, "copy", Pausing())

    def refused() -> None:
        with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
            dynamodb.transact_write_items(TransactItems=[{"Put": {
                "TableName": "items", "Item": {"k": {"S": "taken"}}, "ConditionExpression": "attribute_not_exists(k)"}}])

    transaction = threading.Thread(target=refused)
    transaction.start()
    assert backup_taken.wait(timeout=10), "moto no longer backs its tables up with copy.deepcopy: revisit the test"
    dynamodb.put_item(TableName="items", Item={"k": {"S": "meanwhile"}})
    written.set()
    transaction.join(timeout=10)

    assert "Item" in dynamodb.get_item(TableName="items", Key={"k": {"S": "meanwhile"}})
    assert dynamodb.scan(TableName="items", Select="COUNT")["Count"] == 2

