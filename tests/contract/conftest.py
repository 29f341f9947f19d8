"""Every contract test runs once per backend: `local` (the SQLite adapters on a fresh file) and
`aws` (the DynamoDB adapters of chalicelib.wiring.build_aws_backend on moto, in process)."""
from __future__ import annotations

import functools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.errors import DependencyDown
from tests import iam
from tests.contract.support import AFTER, BEFORE, CONFLICT, PART_WAY, FakeClock, Faults, Ports, Rounds


def _spoil_row(db: Any, execution: Any) -> None:
    with db.write() as connection:
        connection.execute("UPDATE executions SET metadata = '{cut short' WHERE execution_id = ?",
                            (execution.execution_id,))


def _spoil_item(settings: Any, dynamodb: Any, execution: Any) -> None:
    with iam.as_test():
        dynamodb.update_item(TableName=settings.executions_table,
                             Key={"jobId": {"S": execution.job_id}, "executionId": {"S": execution.execution_id}},
                             UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues={":s": {"S": "paused-by-a-newer-version"}})


def _local(tmp_path: Path, clock: FakeClock) -> Iterator[Ports]:
    from infra.local.sqlite.db import Database
    from infra.local.sqlite.stores import Stores, open_stores

    def ports(stores: Stores) -> Ports:
        return Ports(name="local", jobs=stores.jobs, executions=stores.executions, pools=stores.pools,
                     schedules=stores.schedules, statistics=stores.statistics, deliveries=stores.deliveries,
                     connections=stores.connections, idempotency_keys=stores.idempotency_keys, clock=clock,
                     unreachable=unreachable, faulty=lambda faults: _faulty_writes(stores.db, faults),
                     spoil=lambda execution: _spoil_row(stores.db, execution))

    def unreachable() -> Ports:
        # A database whose folder went away after it was opened: no connection can be made again.
        folder = tmp_path / "unreachable"
        folder.mkdir(exist_ok=True)
        broken = Database(str(folder / "fastlane.db"))
        stores = open_stores(broken, clock)
        broken.close()
        shutil.rmtree(folder)
        return ports(stores)

    db = Database(str(tmp_path / "fastlane.db"))
    try:
        yield ports(open_stores(db, clock))
    finally:
        db.close()


@contextmanager
def _faulty_writes(db: Any, faults: Faults) -> Iterator[None]:
    """SQLite's write transactions fail as `faults` says: before they begin, part-way (rolled back
    before their commit) or after their commit."""
    write = db.write

    @contextmanager
    def faulty() -> Iterator[Any]:
        kind = faults.draw((BEFORE, PART_WAY, AFTER), transaction=True)
        if kind == BEFORE:
            raise DependencyDown("SQLite: a fault of the test, before the write")
        with write() as connection:
            yield connection
            if kind == PART_WAY:
                raise DependencyDown("SQLite: a fault of the test, before the commit")
        if kind == AFTER:
            raise DependencyDown("SQLite: a fault of the test, after the commit")

    db.write = faulty  # the adapters share this Database: the instance attribute hides the method
    try:
        yield
    finally:
        del db.write


# How each DynamoDB call can fail: any before it takes effect; a write after (its answer lost, with a
# code botocore does not retry, so the caller sees it); a write of an item that a transaction holds
# is refused with a conflict, and a transaction meeting another one is cancelled (nothing changes).
_DYNAMODB_FAULTS = {"TransactWriteItems": (BEFORE, AFTER, CONFLICT), "UpdateItem": (BEFORE, AFTER, CONFLICT),
                    "PutItem": (BEFORE, AFTER), "DeleteItem": (BEFORE, AFTER), "GetItem": (BEFORE,),
                    "Query": (BEFORE,), "BatchGetItem": (BEFORE,)}


def _dynamodb_error(code: str, message: str, **more: Any) -> tuple[int, dict[str, str], str]:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **more}
    return 400, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}, json.dumps(body)


def _fault(kind: str, operation: str, request: Any) -> tuple[int, dict[str, str], str]:
    if kind != CONFLICT:
        return _dynamodb_error("InjectedFault", f"a fault of the test, {kind} the {operation} took effect")
    if operation == "UpdateItem":
        return _dynamodb_error("TransactionConflictException", "the item is held by an ongoing transaction")
    items = json.loads(request.body)["TransactItems"]
    reasons = [{"Code": "None"} for _ in items[:-1]] + [{"Code": "TransactionConflict", "Message": "met another"}]
    return _dynamodb_error("TransactionCanceledException", "Transaction cancelled, please refer cancellation "
                           "reasons for specific reasons [TransactionConflict]", CancellationReasons=reasons)


def _serialise_moto(monkeypatch: pytest.MonkeyPatch, rounds: Rounds, faults: list[Faults]) -> None:
    """moto's in-process backends are not thread-safe (its DynamoDB transactions iterate dicts that
    other threads change). One request at a time keeps the adapters' own races, which happen
    between requests, while moto answers each request whole. Threads that joined `rounds` send
    theirs in rounds; while `faults` holds one, the DynamoDB calls fail as it says."""
    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.RLock()
    answer = BotocoreStubber.process_request

    def one_at_a_time(self: Any, request: Any) -> Any:
        with rounds.request(), lock:
            target = request.headers.get("X-Amz-Target") or b""
            operation = (target.decode() if isinstance(target, bytes) else target).rpartition(".")[2]
            kinds = _DYNAMODB_FAULTS.get(operation) if faults else None
            kind = faults[0].draw(kinds, transaction=operation == "TransactWriteItems") if kinds else None
            if kind in (BEFORE, CONFLICT):
                return _fault(kind, operation, request)
            response = answer(self, request)
            return _fault(kind, operation, request) if kind == AFTER else response

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)


REGION = "us-east-1"


@functools.cache
def _aws_built(absent: bool) -> tuple[Any, Any, Any]:
    """The aws backend's settings, ports and a DynamoDB client, built once per process: building
    them costs about a second of botocore clients and models, while the tables they are bound to
    are made again, empty, in each test's own moto account. `absent` names tables never made."""
    import boto3

    from chalicelib.config import Settings
    from chalicelib.wiring import build_aws_backend

    prefix = "absent" if absent else "contract"
    settings = Settings(region=REGION, tasks_table=f"{prefix}-tasks", jobs_table=f"{prefix}-jobs",
                        executions_table=f"{prefix}-executions", jobs_queue_url="",
                        deliveries_table=f"{prefix}-deliveries", connections_table=f"{prefix}-connections",
                        idempotency_table=f"{prefix}-idempotency")
    return settings, build_aws_backend(settings), boto3.client("dynamodb", region_name=REGION)


class _Unchecked:
    """A port whose AWS calls the IAM check leaves alone."""

    def __init__(self, port: Any) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._port, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            with iam.as_test():
                return found(*args, **kwargs)

        return call


def _aws(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[Ports]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("AWS_DEFAULT_REGION", REGION), ("AWS_REGION", REGION), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    rounds, faults = Rounds(), []
    _serialise_moto(monkeypatch, rounds, faults)
    from moto import mock_aws

    from chalicelib.adapters.deliveries import DeliveryLog, create_deliveries_table
    from chalicelib.adapters.idempotency import create_idempotency_table
    from tests.powertools_clock import follow_clock

    @contextmanager
    def faulty(plan: Faults) -> Iterator[None]:
        faults.append(plan)
        try:
            yield
        finally:
            faults.remove(plan)

    def ports(absent: bool) -> Ports:
        settings, backend, dynamodb = _aws_built(absent)
        # The backend's delivery log, measuring leases on the test's clock.
        deliveries = DeliveryLog(dynamodb, settings.deliveries_table, clock=clock)
        # Tables that do not exist are no deployment's: what the test sees is the store's answer, not IAM's.
        seen = _Unchecked if absent else (lambda port: port)
        return Ports(name="aws", jobs=seen(backend.jobs), executions=seen(backend.executions), pools=seen(backend.pools),
                     schedules=seen(backend.schedules), statistics=seen(backend.statistics), deliveries=seen(deliveries),
                     connections=seen(backend.connections), idempotency_keys=seen(backend.idempotency_keys),
                     clock=clock, unreachable=lambda: ports(True), faulty=faulty, rounds=rounds,
                     spoil=lambda execution: _spoil_item(settings, dynamodb, execution))

    follow_clock(monkeypatch, clock)  # the idempotency keys' leases and expiry, read by powertools
    # The deployment's tables, as its functions' settings name them: the IAM check resolves grants on them.
    monkeypatch.setenv("FASTLANE_PREFIX", "contract")
    with mock_aws():
        settings, backend, dynamodb = _aws_built(False)
        with iam.as_test():  # what the template creates in AWS
            backend.extras["tables"].create()  # as infra/local/provision.py does
            backend.connections.create_table()
            create_deliveries_table(dynamodb, settings.deliveries_table)
            create_idempotency_table(dynamodb, settings.idempotency_table)
        yield ports(False)


@pytest.fixture(params=["local", "aws"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ports]:
    clock = FakeClock(time.time())
    if request.param == "local":
        yield from _local(tmp_path, clock)
    else:
        yield from _aws(monkeypatch, clock)
