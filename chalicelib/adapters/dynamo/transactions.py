"""How DynamoDB refusals are read, written once: transaction cancellation reasons, conditional
check failures, contention retries, and PynamoDB errors turned into DependencyDown."""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pynamodb.exceptions import PynamoDBException, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from ...domain.errors import Conflict, DependencyDown

T = TypeVar("T")
CONDITION_FAILED = "ConditionalCheckFailed"
CONTENTION_ATTEMPTS = 20
# Reasons for which a cancelled transaction changed nothing and may succeed when made again as it is.
TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


def cancellation_reasons(error: TransactWriteError) -> list[str | None]:
    """One code per item of the transaction, in order (None where that item was fine)."""
    return [r.code if r is not None else None for r in (error.cancellation_reasons or [])]


def refused_item(error: TransactWriteError) -> int | None:
    """The index of the item whose condition failed, or None when the transaction failed for
    another reason (a conflict with another transaction, throttling...)."""
    reasons = cancellation_reasons(error)
    return next((i for i, code in enumerate(reasons) if code == CONDITION_FAILED), None)


def contention(error: TransactWriteError) -> bool:
    """The transaction met another one on the same items: trying again may succeed."""
    return "TransactionConflict" in cancellation_reasons(error)


def transient(error: TransactWriteError) -> bool:
    """Nothing was refused, the transaction met another one or was throttled: make it again."""
    reasons = cancellation_reasons(error)
    return CONDITION_FAILED not in reasons and bool(TRANSIENT_REASONS.intersection(reasons))


def condition_failed(error: PynamoDBException) -> bool:
    """A single-item write refused by its condition."""
    return getattr(error, "cause_response_code", None) == "ConditionalCheckFailedException"


def retry_on_contention(attempt: Callable[[], T]) -> T:
    """Writes whose conditions rest on values read just before: a concurrent writer makes the
    transaction fail, and the attempt is made again on fresh reads."""
    for n in range(CONTENTION_ATTEMPTS):
        try:
            return attempt()
        except TransactWriteError as error:
            reasons = cancellation_reasons(error)
            if CONDITION_FAILED not in reasons and "TransactionConflict" not in reasons:
                raise DependencyDown.of("DynamoDB", f"refused the write: {error.cause_response_message}") from error
            time.sleep(random.uniform(0, 0.01 * (n + 1)))
    raise DependencyDown("DynamoDB: too much contention on the same task, try again")


def commit(build: Callable[[], TransactWrite]) -> None:
    """Commit the transaction `build` makes, made again while DynamoDB cancels it for a transient
    reason (it changed nothing then). It is built anew each time, on the same values: only the
    statistics shard it adds to may change. A refusal (a condition failed) is raised."""
    for n in range(CONTENTION_ATTEMPTS):
        try:
            build()._commit()  # what leaving `with` does
            return
        except TransactWriteError as error:
            if not transient(error):
                raise
            time.sleep(random.uniform(0, 0.01 * (n + 1)))
    raise DependencyDown("DynamoDB: too much contention, try again")


def update_if(item: Any, actions: list[Any], condition: Any) -> bool:
    """A single-item update under a condition; False (nothing written) when the condition
    refused it. Every other error is raised."""
    try:
        item.update(actions=actions, condition=condition)
        return True
    except UpdateError as error:
        if condition_failed(error):
            return False
        raise


def retry_single_write(write: Callable[[], T]) -> T:
    """A single-item write with no condition (an atomic ADD): DynamoDB refuses it, without
    applying it, while a transaction holds the same item (TransactionConflictException), so it is
    made again; there is no value to read again, and no condition that another writer can fail."""
    for n in range(CONTENTION_ATTEMPTS):
        try:
            return write()
        except UpdateError as error:
            if getattr(error, "cause_response_code", None) != "TransactionConflictException":
                raise
            time.sleep(random.uniform(0, 0.005 * (n + 1)))
    raise DependencyDown("DynamoDB: the item stayed held by other transactions, try again")


def guard(call: Callable[[], T]) -> T:
    """Run a store operation; anything PynamoDB raises becomes DependencyDown (503)."""
    try:
        return call()
    except (Conflict, DependencyDown):
        raise
    except PynamoDBException as error:
        raise DependencyDown.of("DynamoDB", error.msg) from error
