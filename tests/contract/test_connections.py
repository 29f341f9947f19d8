"""The Connections port: websocket subscribers of live logs (their catch-up, pending chunks,
overflow, going live, the end) and per watched execution what the live fan-out delivered."""
from __future__ import annotations

import time

import pytest

from chalicelib.domain.errors import DependencyDown
from chalicelib.domain.live import Cursor, Position, Subscriber
from chalicelib.domain.model import new_id
from tests.contract.support import Ports, at_once

ENDPOINT = "https://ws.example.com/live"


def a_subscriber(execution_id: str | None = None, **fields: object) -> Subscriber:
    at = time.time()
    values: dict[str, object] = {
        "connection_id": f"conn-{new_id()}", "endpoint": ENDPOINT, "execution_id": execution_id or new_id(),
        "task_id": "task", "job_id": new_id(), "follow": "execution", "ecs_task_id": f"ecs-{new_id()}",
        "connected_at": round(at, 3), "expires_at": float(int(at) + 7200), **fields}
    return Subscriber(**values)  # type: ignore[arg-type]


def test_a_subscriber_is_kept_as_it_was_put(backend: Ports) -> None:
    subscriber = a_subscriber(follow="job", cursor=Cursor(Position(1_700_000_000_000, "123"), None))

    backend.connections.put_subscriber(subscriber)

    assert backend.connections.get_subscriber(subscriber.connection_id) == subscriber


def test_a_subscriber_that_is_not_there_reads_as_none(backend: Ports) -> None:
    assert backend.connections.get_subscriber("conn-unknown") is None


def test_an_executions_subscribers_are_those_whose_connection_can_still_be_open(backend: Ports) -> None:
    execution_id = new_id()
    watching = [a_subscriber(execution_id) for _ in range(2)]
    expired = a_subscriber(execution_id, expires_at=float(int(time.time()) - 10))
    elsewhere = a_subscriber()
    for subscriber in [*watching, expired, elsewhere]:
        backend.connections.put_subscriber(subscriber)

    found = backend.connections.subscribers(execution_id)

    assert sorted(s.connection_id for s in found) == sorted(s.connection_id for s in watching)


def test_a_deleted_subscriber_is_gone_and_deleting_again_is_fine(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)

    backend.connections.delete(subscriber.connection_id)
    backend.connections.delete(subscriber.connection_id)

    assert backend.connections.get_subscriber(subscriber.connection_id) is None
    assert backend.connections.subscribers(subscriber.execution_id) == []


# catching up and going live ---------------------------------------------------------------------


def test_chunks_that_arrive_during_the_catch_up_are_kept_in_order(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)

    results = [backend.connections.append_pending(subscriber.connection_id, f'[["stdout",{n},"{n}","line"]]')
               for n in range(3)]

    assert results == ["kept"] * 3
    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and stored.pending == tuple(f'[["stdout",{n},"{n}","line"]]' for n in range(3))


def test_a_subscriber_goes_live_when_nothing_arrived_since_it_read_the_pending_chunks(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)
    backend.connections.append_pending(subscriber.connection_id, "chunk-1")
    cursor = Cursor(Position(1_700_000_000_001, "7"), Position(1_700_000_000_002, "9"))

    assert backend.connections.go_live(subscriber.connection_id, cursor, pending_seen=0) is False  # one it did not see
    assert backend.connections.go_live(subscriber.connection_id, cursor, pending_seen=1) is True

    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and (stored.live, stored.pending, stored.cursor) == (True, (), cursor)


def test_going_live_keeps_the_position_of_a_stream_it_does_not_name(backend: Ports) -> None:
    kept = Position(1_700_000_000_000, "1")
    subscriber = a_subscriber(cursor=Cursor(None, kept))
    backend.connections.put_subscriber(subscriber)

    assert backend.connections.go_live(subscriber.connection_id, Cursor(Position(1_700_000_000_005, "2"), None), 0)

    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and stored.cursor == Cursor(Position(1_700_000_000_005, "2"), kept)


def test_a_live_subscriber_takes_no_pending_chunk(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)
    backend.connections.go_live(subscriber.connection_id, Cursor(), 0)

    assert backend.connections.append_pending(subscriber.connection_id, "late chunk") == "refused"
    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and stored.pending == ()


def test_too_much_pending_output_overflows_and_the_subscriber_re_reads_before_going_live(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)
    chunk = "x" * (100 * 1024)

    results = [backend.connections.append_pending(subscriber.connection_id, chunk) for _ in range(8)]

    assert results[0] == "kept" and "full" in results
    assert set(results[results.index("full"):]) == {"full"}  # once full, it stays full
    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and stored.overflow
    assert backend.connections.go_live(subscriber.connection_id, Cursor(), len(stored.pending)) is False

    backend.connections.clear_overflow(subscriber.connection_id)

    cleared = backend.connections.get_subscriber(subscriber.connection_id)
    assert cleared is not None and (cleared.overflow, cleared.pending) == (False, ())
    assert backend.connections.go_live(subscriber.connection_id, Cursor(), 0) is True


def test_an_end_during_the_catch_up_is_kept_and_stops_it_going_live(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)

    assert backend.connections.mark_end(subscriber.connection_id, {"reason": "done"}) is True

    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and stored.end == {"reason": "done"}
    assert backend.connections.go_live(subscriber.connection_id, Cursor(), 0) is False


def test_an_end_is_not_marked_on_a_live_subscriber(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)
    backend.connections.go_live(subscriber.connection_id, Cursor(), 0)

    assert backend.connections.mark_end(subscriber.connection_id, {"reason": "done"}) is False
    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and stored.end is None


def test_chunks_appended_at_once_are_all_kept(backend: Ports) -> None:
    subscriber = a_subscriber()
    backend.connections.put_subscriber(subscriber)

    at_once(8, lambda n: backend.connections.append_pending(subscriber.connection_id, f"chunk-{n}"))

    stored = backend.connections.get_subscriber(subscriber.connection_id)
    assert stored is not None and sorted(stored.pending) == sorted(f"chunk-{n}" for n in range(8))


# streams ----------------------------------------------------------------------------------------


def test_a_stream_record_is_opened_once_and_keeps_what_was_delivered(backend: Ports) -> None:
    opened = backend.connections.open_stream("ecs-1", "exec-1")
    assert (opened.ecs_task_id, opened.execution_id, opened.delivered, opened.ended) == ("ecs-1", "exec-1", Cursor(),
                                                                                         False)
    delivered = Position(1_700_000_000_000, "42")
    assert backend.connections.claim("ecs-1", "stdout", None, delivered)

    again = backend.connections.open_stream("ecs-1", "exec-1")

    assert again.delivered == Cursor(delivered, None)
    assert backend.connections.get_stream("ecs-1") == again


def test_a_delivery_is_claimed_only_from_the_position_it_was_read_at(backend: Ports) -> None:
    backend.connections.open_stream("ecs-2", "exec-2")
    first, second = Position(1_700_000_000_000, "1"), Position(1_700_000_000_001, "2")

    assert backend.connections.claim("ecs-2", "stderr", None, first) is True
    assert backend.connections.claim("ecs-2", "stderr", None, second) is False  # moved by someone else
    assert backend.connections.claim("ecs-2", "stderr", first, second) is True

    stored = backend.connections.get_stream("ecs-2")
    assert stored is not None and stored.delivered == Cursor(None, second)


def test_the_end_of_a_stream_stops_every_later_claim(backend: Ports) -> None:
    backend.connections.open_stream("ecs-3", "exec-3")

    ended = backend.connections.end_stream("ecs-3")

    assert ended is not None and ended.ended and ended.execution_id == "exec-3"
    assert backend.connections.claim("ecs-3", "stdout", None, Position(1, "1")) is False
    stored = backend.connections.get_stream("ecs-3")
    assert stored is not None and stored.ended


def test_a_stream_nobody_watched_has_no_record_and_no_end(backend: Ports) -> None:
    assert backend.connections.get_stream("ecs-unwatched") is None
    assert backend.connections.end_stream("ecs-unwatched") is None
    assert backend.connections.claim("ecs-unwatched", "stdout", None, Position(1, "1")) is False
    assert backend.connections.get_stream("ecs-unwatched") is None


def test_one_of_claims_made_at_once_from_the_same_position_wins(backend: Ports) -> None:
    backend.connections.open_stream("ecs-4", "exec-4")

    won = at_once(8, lambda n: backend.connections.claim("ecs-4", "stdout", None, Position(1_700_000_000_000, str(n))))

    assert won.count(True) == 1


def test_a_store_in_reach_answers_ping(backend: Ports) -> None:
    from tests import iam

    with iam.as_test():  # the local runtime's health check; no deployed function pings this table
        backend.connections.ping()


def test_a_store_out_of_reach_is_a_dependency_down(backend: Ports) -> None:
    gone = backend.unreachable()

    with pytest.raises(DependencyDown):
        gone.connections.ping()
    with pytest.raises(DependencyDown):
        gone.connections.get_subscriber("conn-1")
    with pytest.raises(DependencyDown):
        gone.connections.put_subscriber(a_subscriber())
