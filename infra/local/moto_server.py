"""What the aws backend needs of moto when the runtime emulates AWS with it: its DynamoDB made
safe for concurrent requests, and its routing made cheaper. Used by the local runtime's aws
backend and by the tests that drive the AWS adapters from several threads; never deployed."""
from __future__ import annotations

import threading
from typing import Any

_dynamodb_lock = threading.RLock()


def serialize_dynamodb() -> None:
    """moto 5.2's DynamoDB is not safe under concurrent requests: a transaction checks and writes
    its items one by one with nothing holding other writers off, and one that is cancelled puts
    back a copy of every table it touched as the table stood when it began, undoing whatever
    other requests wrote meanwhile (an accepted job's execution vanished, a pool slot taken twice).
    DynamoDB itself is linearizable per item and its transactions are isolated, so the emulator
    answers one DynamoDB request at a time. No DynamoDB call waits inside moto, so the lock costs
    only the parallelism the interpreter lock already takes away."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "serialized", False):
        return
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _dynamodb_lock:
            return original(self)

    call_action.serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def cache_service_list() -> None:
    """moto's server lists its ~180 service folders on disk, under one lock, for every request
    it routes; the list never changes while it runs, so read it once (about 8% off each emulated
    call, measured on the 2-core machine)."""
    from moto import backends

    if not getattr(backends.list_of_moto_modules, "cached", False):
        modules = tuple(backends.list_of_moto_modules())

        def cached() -> tuple[str, ...]:
            return modules

        cached.cached = True  # type: ignore[attr-defined]
        backends.list_of_moto_modules = cached
