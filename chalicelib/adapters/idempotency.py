"""Idempotency keys on DynamoDB (the IdempotencyKeys port), kept by the aws-lambda-powertools
idempotency utility and its DynamoDB persistence layer. Layout: docs/storage.md."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..domain.errors import DependencyDown
from ..domain.idempotency import KEEP_SECONDS, LEASE_SECONDS, Answer
from ..ports import KeyOutcome, KeyState

KEY_ATTRIBUTE = "idempotencyKey"
EXPIRY_ATTRIBUTE = "expiresAt"  # the table's TTL attribute (epoch seconds)
# The utility prefixes its hash of the key with this (it would use the Lambda function's name and
# the decorated function's, which a rename or a second function would change).
KEY_PREFIX = "fastlane"


class _NotKept(Exception):
    """Carries an answer that is not kept out of the idempotent function: the utility deletes the
    in-progress record of a function that raised, which frees the key."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class _Replayed:
    """What the utility hands back for a key already answered (its response hook marks it)."""

    def __init__(self, kept: dict[str, Any]) -> None:
        self.kept = kept


class PowertoolsIdempotencyKeys:
    """One item per key: `INPROGRESS` (until `inProgressUntil`, ms) → `COMPLETED` with the answer
    as JSON, `bodyHash` the hash of the body's fingerprint; `expiresAt` (TTL) 24 hours after the
    answer. The utility's conditional put takes a key that is new, expired, or in progress past
    its lease; a body hash that differs is its IdempotencyValidationError."""

    def __init__(self, client: Any, table: str, keep_seconds: int = KEEP_SECONDS,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._client = client
        self._table = table
        self._keep = keep_seconds
        self._lease = lease_seconds
        self._run: Callable[..., Any] | None = None
        self._building = threading.Lock()

    def _idempotent(self) -> Callable[..., Any]:
        if self._run is None:
            with self._building:
                if self._run is None:
                    self._run = self._build()
        return self._run

    def _build(self) -> Callable[..., Any]:
        # Imported here, off the cold-start path: only a request that carries an Idempotency-Key
        # pays for the utility (and jmespath), once per container.
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )
        from aws_lambda_powertools.utilities.typing import LambdaContext

        lease_ms = int(self._lease * 1000)

        class Lease(LambdaContext):
            """The utility ends an in-progress record when the invocation that wrote it would
            have timed out, read from the Lambda context; the lease stands in for it, the same
            in AWS, under chalice.test and in the local runtime."""

            def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
                return lease_ms

        store = DynamoDBPersistenceLayer(
            table_name=self._table, key_attr=KEY_ATTRIBUTE, expiry_attr=EXPIRY_ATTRIBUTE,
            in_progress_expiry_attr="inProgressUntil", status_attr="status", data_attr="answer",
            validation_key_attr="bodyHash", boto3_client=self._client)
        config = IdempotencyConfig(
            event_key_jmespath="key", payload_validation_jmespath="fingerprint", raise_on_no_idempotency_key=True,
            expires_after_seconds=self._keep, hash_function="sha256", lambda_context=Lease(),
            response_hook=lambda kept, _record: _Replayed(kept))

        def run(*, request: dict[str, str], action: Callable[[], Answer]) -> dict[str, Any]:
            answer = action()
            if not answer.kept:
                raise _NotKept(answer)
            return answer.to_json()

        idempotent: Callable[..., Any] = idempotent_function(
            run, data_keyword_argument="request", persistence_store=store, config=config, key_prefix=KEY_PREFIX)
        return idempotent

    def run_once(self, key: str, fingerprint: str, action: Callable[[], Answer]) -> KeyOutcome:
        run = self._idempotent()
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyPersistenceLayerError,
            IdempotencyValidationError,
        )

        try:
            result = run(request={"key": key, "fingerprint": fingerprint}, action=action)
        except _NotKept as refused:
            return KeyOutcome(KeyState.RAN, refused.answer)
        except IdempotencyValidationError:
            return KeyOutcome(KeyState.REUSED)
        except (IdempotencyAlreadyInProgressError, IdempotencyInconsistentStateError):
            # Inconsistent: the record changed between the utility's put and its get, three
            # times over; a request with the key is moving it, so it is in progress.
            return KeyOutcome(KeyState.IN_PROGRESS)
        except IdempotencyPersistenceLayerError as error:
            raise DependencyDown.of("DynamoDB (idempotency keys)", error) from error
        if isinstance(result, _Replayed):
            return KeyOutcome(KeyState.REPLAYED, Answer.from_json(result.kept))
        return KeyOutcome(KeyState.RAN, Answer.from_json(result))


def create_idempotency_table(client: Any, table: str) -> None:
    """The idempotency keys' table (tests and the local runtime; in AWS the template creates it)."""
    if table in client.list_tables().get("TableNames", []):
        return
    client.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
    )
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    client.update_time_to_live(TableName=table,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRY_ATTRIBUTE})
