# mypy: disable-error-code="no-untyped-call,type-arg"
# (PynamoDB declares indexes through untyped __init_subclass__ hooks and generic classes.)
"""The websocket connections table, through PynamoDB: who watches which execution's output, and
per watched execution what the live fan-out has delivered. Keys and access patterns:
docs/storage.md#prefix-connections."""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, PynamoDBException, UpdateError
from pynamodb.expressions.condition import size
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..config import Settings
from ..domain.errors import DependencyDown
from ..domain.live import Cursor, Position, StreamRecord, Subscriber
from . import aws_session

STREAM_PREFIX = "#stream:"  # never an API Gateway connection id, so the kinds cannot clash
STREAM_RECORD_SECONDS = 24 * 3600


F = TypeVar("F", bound=Callable[..., Any])


def _reachable(method: F) -> F:
    """A table that cannot be reached is a DependencyDown (503), as for every store."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            self._share_session()
            return method(self, *args, **kwargs)
        except (PynamoDBException, BotoCoreError, ClientError) as error:
            raise DependencyDown.of("DynamoDB", error) from error

    return cast(F, guarded)


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def _code(error: Exception) -> str:
    return getattr(error, "cause_response_code", None) or ""


def build_model(settings: Settings) -> Any:
    class ByExecution(GlobalSecondaryIndex):
        class Meta:
            index_name = "by_execution"
            projection = AllProjection()

        execution_id = UnicodeAttribute(hash_key=True, attr_name="executionId")

    class ConnectionModel(Model):
        class Meta:
            table_name = settings.connections_table
            region = settings.region
            billing_mode = "PAY_PER_REQUEST"

        connection_id = UnicodeAttribute(hash_key=True, attr_name="connectionId")
        expires_at = TTLAttribute(null=True, attr_name="expiresAt")
        # subscriber items
        execution_id = UnicodeAttribute(null=True, attr_name="executionId")
        task_id = UnicodeAttribute(null=True, attr_name="taskId")
        job_id = UnicodeAttribute(null=True, attr_name="jobId")
        follow = UnicodeAttribute(null=True)
        endpoint = UnicodeAttribute(null=True)
        ecs_task_id = UnicodeAttribute(null=True, attr_name="ecsTaskId")
        connected_at = NumberAttribute(null=True, attr_name="connectedAt")
        live = BooleanAttribute(null=True)
        pending = ListAttribute(of=UnicodeAttribute, null=True)
        overflow = BooleanAttribute(null=True)
        end = UnicodeAttribute(null=True)
        # subscriber and stream items: positions sent (subscriber) or delivered (stream)
        stdout_at = UnicodeAttribute(null=True, attr_name="stdoutAt")
        stderr_at = UnicodeAttribute(null=True, attr_name="stderrAt")
        # stream items
        stream_of = UnicodeAttribute(null=True, attr_name="streamOf")
        ended = BooleanAttribute(null=True)
        by_execution = ByExecution()

    return ConnectionModel


def _cursor(item: Any) -> Cursor:
    return Cursor(Position.parse(item.stdout_at), Position.parse(item.stderr_at))


def _subscriber(item: Any) -> Subscriber:
    expires = item.expires_at.timestamp() if item.expires_at else 0.0
    return Subscriber(
        connection_id=item.connection_id, endpoint=item.endpoint or "", execution_id=item.execution_id or "",
        task_id=item.task_id or "", job_id=item.job_id or "", follow=item.follow or "execution",
        ecs_task_id=item.ecs_task_id or "", connected_at=float(item.connected_at or 0), expires_at=expires,
        live=bool(item.live), cursor=_cursor(item), pending=tuple(item.pending or ()), overflow=bool(item.overflow),
        end=json.loads(item.end) if item.end else None,
    )


def _stream(item: Any) -> StreamRecord:
    return StreamRecord(ecs_task_id=item.connection_id[len(STREAM_PREFIX):], execution_id=item.stream_of or "",
                        delivered=_cursor(item), ended=bool(item.ended))


class DynamoConnectionStore:
    """Subscriber items (key: the API Gateway connection id; indexed by execution) and stream
    items (key: `#stream:<ECS task id>`, the prefix of the execution's log streams)."""

    def __init__(self, settings: Settings, model: Any = None) -> None:
        self.model = model or build_model(settings)
        self._shared = False

    def _share_session(self) -> None:
        """The model's client from the process's one botocore session (aws_session.py), for
        every thread, as the other tables' (PynamoDB would make a session per thread)."""
        if not self._shared:
            connection = self.model._get_connection().connection
            connection._client = aws_session.pynamodb_client(connection)  # pinned pynamodb 6.1
            self._shared = True

    # subscribers ------------------------------------------------------------------------------

    @_reachable
    def put_subscriber(self, subscriber: Subscriber) -> None:
        M = self.model
        M(subscriber.connection_id, execution_id=subscriber.execution_id, task_id=subscriber.task_id,
          job_id=subscriber.job_id, follow=subscriber.follow, endpoint=subscriber.endpoint,
          ecs_task_id=subscriber.ecs_task_id, connected_at=subscriber.connected_at,
          expires_at=_when(subscriber.expires_at), live=subscriber.live, pending=[],
          stdout_at=str(subscriber.cursor.stdout) if subscriber.cursor.stdout else None,
          stderr_at=str(subscriber.cursor.stderr) if subscriber.cursor.stderr else None).save()

    @_reachable
    def get_subscriber(self, connection_id: str) -> Subscriber | None:
        try:
            item = self.model.get(connection_id, consistent_read=True)
        except DoesNotExist:
            return None
        return _subscriber(item) if item.execution_id else None

    @_reachable
    def subscribers(self, execution_id: str, at: float | None = None) -> list[Subscriber]:
        """The execution's subscribers whose connection can still be open (the index is eventually
        consistent: a subscriber of the last instant may be missing, see go_live)."""
        at = time.time() if at is None else at
        found = [_subscriber(item) for item in self.model.by_execution.query(execution_id)]
        return [s for s in found if s.expires_at > at]

    @_reachable
    def delete(self, connection_id: str) -> None:
        try:
            self.model(connection_id).delete()
        except DeleteError:
            pass  # gone already

    @_reachable
    def append_pending(self, connection_id: str, chunk: str) -> str:
        """Keep a live chunk for a subscriber still catching up: 'kept', 'refused' (it is live
        now, or gone) or 'full' (the item cannot hold more)."""
        M = self.model
        try:
            M(connection_id).update(actions=[M.pending.set(M.pending.append([chunk]))],
                                    condition=M.execution_id.exists() & (M.live == False))  # noqa: E712
            return "kept"
        except UpdateError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return "refused"
            if _code(error) == "ValidationException":  # over DynamoDB's 400 KB item size
                try:
                    M(connection_id).update(actions=[M.overflow.set(True)], condition=M.live == False)  # noqa: E712
                except UpdateError:
                    return "refused"
                return "full"
            raise

    @_reachable
    def go_live(self, connection_id: str, cursor: Cursor, pending_seen: int) -> bool:
        """Become live with `cursor` if nothing arrived since it was read: no more pending chunks
        than those seen, no overflow, no end."""
        M = self.model
        actions = [M.live.set(True), M.pending.set([])]
        for stream, attribute in (("stdout", M.stdout_at), ("stderr", M.stderr_at)):
            position = cursor.of(stream)
            if position is not None:
                actions.append(attribute.set(str(position)))
        condition = (M.execution_id.exists() & (size(M.pending) == pending_seen) & M.end.does_not_exist()
                     & M.overflow.does_not_exist())
        try:
            M(connection_id).update(actions=actions, condition=condition)
            return True
        except UpdateError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise

    @_reachable
    def clear_overflow(self, connection_id: str) -> None:
        """After a fresh read from CloudWatch: forget what pending held."""
        M = self.model
        M(connection_id).update(actions=[M.overflow.remove(), M.pending.set([])])

    @_reachable
    def mark_end(self, connection_id: str, end: dict[str, Any]) -> bool:
        """Tell a subscriber still catching up that the execution ended; False if it is live."""
        M = self.model
        try:
            M(connection_id).update(actions=[M.end.set(json.dumps(end))],
                                    condition=M.execution_id.exists() & (M.live == False))  # noqa: E712
            return True
        except UpdateError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise

    # streams ----------------------------------------------------------------------------------

    @_reachable
    def open_stream(self, ecs_task_id: str, execution_id: str) -> StreamRecord:
        """Create the execution's stream item, or keep the one there (with what it delivered)."""
        M = self.model
        item = M(STREAM_PREFIX + ecs_task_id)
        item.update(actions=[M.stream_of.set(execution_id),
                             M.expires_at.set(_when(time.time() + STREAM_RECORD_SECONDS))])
        return _stream(item)

    @_reachable
    def get_stream(self, ecs_task_id: str) -> StreamRecord | None:
        try:
            return _stream(self.model.get(STREAM_PREFIX + ecs_task_id, consistent_read=True))
        except DoesNotExist:
            return None

    @_reachable
    def claim(self, ecs_task_id: str, stream: str, expected: Position | None, new: Position) -> bool:
        """Record that the fan-out delivers up to `new`, if nothing else moved it since it read
        `expected` and the execution's end was not sent."""
        M = self.model
        attribute = M.stdout_at if stream == "stdout" else M.stderr_at
        moved_by_nobody = attribute.does_not_exist() if expected is None else attribute == str(expected)
        condition = M.stream_of.exists() & (M.ended.does_not_exist() | (M.ended == False)) & moved_by_nobody  # noqa: E712
        try:
            M(STREAM_PREFIX + ecs_task_id).update(actions=[attribute.set(str(new))], condition=condition)
            return True
        except UpdateError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return False
            raise

    @_reachable
    def end_stream(self, ecs_task_id: str) -> StreamRecord | None:
        """Mark the execution's end as sent (no more live deliveries); None if nobody ever
        watched it."""
        M = self.model
        item = M(STREAM_PREFIX + ecs_task_id)
        try:
            item.update(actions=[M.ended.set(True)], condition=M.stream_of.exists())
        except UpdateError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return None
            raise
        return _stream(item)

    # provisioning (tests and the local runtime; in AWS the template creates the table) ---------

    def create_table(self) -> None:
        if not self.model.exists():
            self.model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    @_reachable
    def ping(self) -> None:
        self.model.describe_table()

