"""Live logs over websockets: a subscriber gets an execution's output written so far (one read of
CloudWatch Logs), then every chunk the log subscription delivers, then the exit code, then a
close. Live chunks are read once per execution, by the subscription, never per client.
The service takes typed values (domain/live.py); live_handlers.py decodes the websocket events
and the subscription's deliveries. Frames, positions and close reasons: docs/live-logs.md."""
from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..domain import ecs
from ..domain import timeline as timelines
from ..domain.errors import DependencyDown, FastlaneError, NotFound
from ..domain.live import (
    CONNECTION_LIFETIME_SECONDS,
    STREAMS,
    Connection,
    Cursor,
    DeferredSubscription,
    FrameWriter,
    LogChunk,
    LogEvent,
    StreamRecord,
    Subscriber,
    SubscribeRequest,
    Subscription,
    close_frame,
    end_frame,
    error_frame,
    is_after,
    pong_frame,
    subscribed_frame,
)
from ..domain.model import Execution, ExecutionStatus, Job
from ..observability import logger
from ..ports import Connections, Executions, Jobs, LogEvents, Sockets, Starter
from .jobs import find_job

CONNECT_WAIT_SECONDS = 5.0  # how long a subscription made on $connect waits for the socket to open
RETRY_SECONDS = 5.0  # when to come back for an execution that has no due time
STOP_GRACE_SECONDS = 150.0  # a stopped container may write until ECS kills it (stopTimeout <= 120 s)
MISSED_END_AFTER_SECONDS = 30.0  # a ping ends a stream whose end was missed, this long after the execution ended
GO_LIVE_ATTEMPTS = 20


def _end_frame(execution: Execution) -> str:
    return end_frame(execution.execution_id, execution.status.value, execution.exit_code, execution.error,
                     timelines.shown(execution.timeline, execution.task_arn, execution.metadata))


class LiveLogs:
    def __init__(self, connections: Connections, sockets: Sockets, log_events: LogEvents, starter: Starter,
                 jobs: Jobs, executions: Executions, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self._connections = connections
        self._sockets = sockets
        self._log_events = log_events
        self._starter = starter
        self._jobs = jobs
        self._executions = executions
        self._clock = clock
        self._sleep = sleep

    def warm(self) -> None:
        """Open the management API's client that a first subscriber would wait for."""
        self._sockets.warm()

    # the websocket routes -----------------------------------------------------------------------

    def connect(self, connection: Connection, request: SubscribeRequest) -> None:
        """A subscription in the query string of $connect, which cannot send: the logs function
        runs it once the socket is open."""
        self._starter.start(DeferredSubscription(connection, request).to_payload())

    def ping(self, connection: Connection) -> None:
        self.send(connection, pong_frame())
        self._end_if_missed(connection.connection_id)

    def send(self, connection: Connection, frame: str) -> bool:
        """Send one frame; False when the connection is not open."""
        return self._sockets.post(connection.endpoint, connection.connection_id, frame)

    def disconnect(self, connection_id: str) -> None:
        self._connections.delete(connection_id)

    # subscribing --------------------------------------------------------------------------------

    def start(self, deferred: DeferredSubscription) -> None:
        """A subscription made on $connect, run by the logs function once the socket is open."""
        self.subscribe(deferred.connection, deferred.request, deferred=True)

    def _send_first(self, connection: Connection, frame: str, deferred: bool) -> bool:
        """The first frame of a subscription made on $connect may come before API Gateway opened
        the socket: it is tried again for a few seconds."""
        deadline = self._clock() + (CONNECT_WAIT_SECONDS if deferred else 0.0)
        delay = 0.05
        while True:
            if self.send(connection, frame):
                return True
            if self._clock() >= deadline:
                return False
            self._sleep(delay)
            delay = min(delay * 2, 0.5)

    def _close(self, connection: Connection, reason: str, retry_after: float | None = None) -> None:
        """In AWS a server cannot give a close reason: it is the last frame, then the socket is
        closed (the local runtime closes with that reason too)."""
        self.send(connection, close_frame(reason, retry_after))
        self._sockets.close(connection.endpoint, connection.connection_id)

    def _execution_of(self, job: Job, subscription: Subscription) -> Execution | None:
        if subscription.execution_id:
            execution = self._executions.get_execution(job.job_id, subscription.execution_id)
            if execution is None:
                raise NotFound(f"Execution '{subscription.execution_id}' was not found in job '{job.job_id}'.",
                               field="executionId")
            return execution
        if not job.execution_count:
            return None
        page = self._executions.list_executions(job.job_id, 1, 1, total=job.execution_count)
        return page.items[0] if page.items else None

    def _output_complete(self, execution: Execution) -> bool:
        """Whether everything the execution will ever write is in CloudWatch Logs already."""
        if not execution.status.is_final or execution.task_arn is None or execution.exit_code is not None:
            return execution.status.is_final
        if execution.status in (ExecutionStatus.STOPPED, ExecutionStatus.TIMEDOUT):
            # Ended by us: its container may still be stopping, and writing.
            return self._clock() - (execution.finished_at or 0.0) > STOP_GRACE_SECONDS
        return True

    def _retry_after(self, execution: Execution | None) -> float:
        if execution is None or execution.due_at is None:
            return RETRY_SECONDS if execution is None else 1.0
        return round(min(30.0, max(1.0, execution.due_at - self._clock())), 1)

    def _close_reason(self, execution: Execution, follow: str) -> str:
        """A subscriber of a job is sent on to the job's next execution (a retry) with `retry`."""
        if follow == "job":
            job = self._jobs.get_job(execution.job_id)
            if job is not None and job.active - {execution.execution_id}:
                return "retry"
        return "done"

    def subscribe(self, connection: Connection, request: SubscribeRequest, deferred: bool = False) -> None:
        try:
            subscription = Subscription.parse(request)
            job = find_job(self._jobs, subscription.task_id, subscription.job_id)
            execution = self._execution_of(job, subscription)
        except DependencyDown as error:
            if self._send_first(connection, error_frame(error.message), deferred):
                self._close(connection, "retry", RETRY_SECONDS)
            return
        except FastlaneError as error:
            if self._send_first(connection, error_frame(error.message, error.field), deferred):
                self._close(connection, "error")
            return
        if not deferred:
            self._connections.delete(connection.connection_id)  # a connection watches one execution at a time
        execution_id = execution.execution_id if execution else None
        logger.info("live logs: subscribe", extra=dict(connection_id=connection.connection_id, task_id=job.task_id,
                                                       job_id=job.job_id, execution_id=execution_id))
        first = subscribed_frame(job.task_id, job.job_id, execution_id,
                                 execution.status.value if execution else None, subscription.follow)
        if not self._send_first(connection, first, deferred):
            return  # the client left
        if execution is None or execution.task_arn is None:
            if execution is not None and execution.status.is_final:
                self.send(connection, _end_frame(execution))
                self._close(connection, self._close_reason(execution, subscription.follow))
            else:
                self._close(connection, "retry", self._retry_after(execution))
            return
        ecs_task_id = ecs.ecs_task_id(execution.task_arn)
        writer = FrameWriter(functools.partial(self.send, connection), subscription.after)
        if self._output_complete(execution):
            self._catch_up(writer, ecs_task_id, subscription.after)
            if not writer.gone:
                self.send(connection, _end_frame(execution))
                self._close(connection, self._close_reason(execution, subscription.follow))
            return
        at = self._clock()
        subscriber = Subscriber(connection_id=connection.connection_id, endpoint=connection.endpoint,
                                execution_id=execution.execution_id, task_id=job.task_id, job_id=job.job_id,
                                follow=subscription.follow, ecs_task_id=ecs_task_id, connected_at=at,
                                expires_at=at + CONNECTION_LIFETIME_SECONDS + 60, cursor=subscription.after)
        # Registered before the catch-up is read, so no chunk falls between the two: chunks that
        # arrive meanwhile wait in the subscriber's item (pending) until the catch-up is sent.
        self._connections.put_subscriber(subscriber)
        if not execution.watched:
            # Before the stream opens: the monitor's ending of the execution conditions on this
            # flag, so a container that stops from now on ends this subscriber's stream.
            self._executions.update_execution(execution, None, watched=True)
        self._connections.open_stream(ecs_task_id, execution.execution_id)
        self._catch_up(writer, ecs_task_id, subscription.after)
        if writer.gone:
            self._connections.delete(connection.connection_id)
            return
        self._go_live(subscriber, writer)
        if not execution.watched:
            # The monitor ends the streams of an execution it finds watched. One that ended after
            # it was read above and before `watched` was written ended unseen, and nobody would
            # end this stream: end it now (ending a stream is done once, whoever comes second).
            current = self._executions.get_execution(job.job_id, execution.execution_id)
            if current is not None and current.status.is_final and current.task_arn:
                self.end(current)

    def _catch_up(self, writer: FrameWriter, ecs_task_id: str, after: Cursor,
                  streams: tuple[str, ...] = STREAMS) -> None:
        for page in self._log_events.read(ecs_task_id, streams, after.start_of(streams)):
            writer.add_all(page)
            if writer.gone:
                return
        writer.flush()

    def _go_live(self, subscriber: Subscriber, writer: FrameWriter) -> None:
        """Send what arrived during the catch-up, then become live, atomically with respect to
        the fan-out: going live fails while anything new waits."""
        seen = 0
        for _ in range(GO_LIVE_ATTEMPTS):
            current = self._connections.get_subscriber(subscriber.connection_id)
            if current is None:
                return  # disconnected
            for chunk in current.pending[seen:]:
                writer.add_all(LogEvent.from_list(item) for item in json.loads(chunk))
            seen = len(current.pending)
            writer.flush()
            if writer.gone:
                self._connections.delete(subscriber.connection_id)
                return
            record = self._connections.get_stream(subscriber.ecs_task_id)
            if current.end is not None or (record is not None and record.ended):
                self._finish_alone(current, writer, current.end)
                return
            if (record is not None and record.delivered.ahead_of(writer.cursor)) or current.overflow:
                logger.info("live logs: reading what the subscription delivered meanwhile",
                            extra={"connection_id": subscriber.connection_id, "overflow": current.overflow,
                                   "delivered": str(record.delivered) if record else None,
                                   "cursor": str(writer.cursor)})
                # A chunk was delivered that this subscriber did not get (the index had not shown
                # it yet, or pending overflowed): read it from CloudWatch.
                for stream in STREAMS:
                    self._catch_up(writer, subscriber.ecs_task_id, writer.cursor, (stream,))
                if current.overflow:
                    self._connections.clear_overflow(subscriber.connection_id)
                    seen = 0
                continue
            if self._connections.go_live(subscriber.connection_id, writer.cursor, seen):
                return
        logger.warning("live logs: subscriber could not go live", extra={"connection_id": subscriber.connection_id})
        self._close(subscriber.connection, "retry", 1.0)
        self._connections.delete(subscriber.connection_id)

    def _finish_alone(self, subscriber: Subscriber, writer: FrameWriter, end: dict[str, Any] | None) -> None:
        """The execution ended while this subscriber was catching up: it reads the rest itself."""
        for stream in STREAMS:
            self._catch_up(writer, subscriber.ecs_task_id, writer.cursor, (stream,))
        execution = self._executions.get_execution(subscriber.job_id, subscriber.execution_id)
        if not writer.gone and execution is not None:
            self.send(subscriber.connection, _end_frame(execution))
            reason = (end or {}).get("reason") or self._close_reason(execution, subscriber.follow)
            self._close(subscriber.connection, reason)
        self._connections.delete(subscriber.connection_id)

    # the live fan-out ---------------------------------------------------------------------------

    def deliver(self, chunk: LogChunk) -> int:
        """A delivery of the log subscription: send its chunk to the execution's subscribers.
        Returns how many subscribers were sent (or kept) it."""
        ecs_task_id, stream, events = chunk
        if not events:
            return 0
        record = self._connections.get_stream(ecs_task_id)
        if record is None or record.ended:
            return 0  # nobody watches this execution, or its end was sent
        subscribers = self._connections.subscribers(record.execution_id)
        if not subscribers:
            return 0
        last = events[-1].position
        for _ in range(5):
            delivered = record.delivered.of(stream)
            if delivered is not None and not is_after(last, delivered):
                break  # older than what was delivered: still sent (late, never lost), nothing to record
            if self._connections.claim(ecs_task_id, stream, delivered, last):
                break
            record = self._connections.get_stream(ecs_task_id)
            if record is None or record.ended:
                return 0
        pending = json.dumps([e.to_list() for e in events])
        count = 0
        for subscriber in subscribers:
            if subscriber.live:
                count += self._send_live(subscriber, record, stream, events)
                continue
            kept = self._connections.append_pending(subscriber.connection_id, pending)
            if kept == "refused":
                current = self._connections.get_subscriber(subscriber.connection_id)
                if current is not None and current.live:
                    count += self._send_live(current, record, stream, events)
            else:
                count += 1
        return count

    def _send_live(self, subscriber: Subscriber, record: StreamRecord, stream: str,
                   events: Sequence[LogEvent]) -> int:
        other = "stderr" if stream == "stdout" else "stdout"
        cursor = subscriber.cursor.moved(other, record.delivered.of(other))
        writer = FrameWriter(functools.partial(self.send, subscriber.connection), cursor)
        writer.add_all(events)
        writer.flush()
        if writer.gone:
            self._connections.delete(subscriber.connection_id)
            return 0
        return 1

    # the end ------------------------------------------------------------------------------------

    def task_stopped(self, job_id: str, execution_id: str, task_arn: str, execution: Execution | None = None) -> None:
        """An ECS task of ours stopped (its output is complete): end the streams of its execution.
        Given the execution as the monitor left it, one nobody watched costs nothing; else the
        stream's record says."""
        if execution is not None:
            if not execution.watched:
                return  # nobody watched it: no read at all
        elif self._connections.get_stream(ecs.ecs_task_id(task_arn)) is None:
            return  # nobody ever watched it: one read, and nothing else
        else:
            execution = self._executions.get_execution(job_id, execution_id)
        if execution is not None and execution.status.is_final and execution.task_arn:
            self.end(execution)

    def end(self, execution: Execution) -> None:
        """Send every subscriber of the execution the output it has not got yet (one read of
        CloudWatch for all of them), the exit code, and a close."""
        assert execution.task_arn
        ecs_task_id = ecs.ecs_task_id(execution.task_arn)
        record = self._connections.end_stream(ecs_task_id)
        if record is None:
            return
        subscribers = self._connections.subscribers(execution.execution_id)
        reason = functools.cache(functools.partial(self._close_reason, execution))  # one read per follow
        live: list[Subscriber] = []
        for subscriber in subscribers:
            if subscriber.live:
                live.append(subscriber)
            elif not self._connections.mark_end(subscriber.connection_id, {"reason": reason(subscriber.follow)}):
                current = self._connections.get_subscriber(subscriber.connection_id)
                if current is not None and current.live:
                    live.append(current)
        if not live:
            return
        logger.info("live logs: execution ended", extra={"execution_id": execution.execution_id,
                                                          "subscribers": len(live)})
        writers = [FrameWriter(functools.partial(self.send, s.connection), s.cursor.merged(record.delivered))
                   for s in live]
        for stream in STREAMS:
            starts = [w.cursor.start_of((stream,)) for w in writers]  # one read from the oldest, for all
            start = min(t for t in starts if t is not None) if None not in starts else None
            for page in self._log_events.read(ecs_task_id, (stream,), start):
                for writer in writers:
                    writer.add_all(page)
            for writer in writers:
                writer.flush()
        final = _end_frame(execution)
        for subscriber, writer in zip(live, writers, strict=True):
            if not writer.gone and self.send(subscriber.connection, final):
                self._close(subscriber.connection, reason(subscriber.follow))
            self._connections.delete(subscriber.connection_id)

    def _end_if_missed(self, connection_id: str) -> None:
        """A ping from a live subscriber of an execution that ended a while ago: its end was
        missed (an ECS event lost, and the reconciler ended the execution), so send it now."""
        subscriber = self._connections.get_subscriber(connection_id)
        if subscriber is None or not subscriber.live:
            return
        execution = self._executions.get_execution(subscriber.job_id, subscriber.execution_id)
        if (execution is not None and execution.task_arn and self._output_complete(execution)
                and self._clock() - (execution.finished_at or 0.0) > MISSED_END_AFTER_SECONDS):
            self.end(execution)
