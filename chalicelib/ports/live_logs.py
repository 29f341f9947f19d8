"""The live log ports: websocket subscribers and streams, the websocket API and the logs function's starter."""
from __future__ import annotations

from typing import Any, Protocol

from ..domain.live import Cursor, Position, StreamRecord, Subscriber

# live logs -------------------------------------------------------------------------------------


class Connections(Protocol):
    """Websocket subscribers of live logs, and per watched execution what was delivered."""

    def put_subscriber(self, subscriber: Subscriber) -> None: ...

    def get_subscriber(self, connection_id: str) -> Subscriber | None: ...

    def subscribers(self, execution_id: str) -> list[Subscriber]: ...

    def delete(self, connection_id: str) -> None: ...

    def append_pending(self, connection_id: str, chunk: str) -> str:
        """Keep a live chunk for a subscriber still catching up: `kept`, `full` (too much: the
        subscriber is marked to re-read) or `refused` (it went live or is gone meanwhile: send it
        directly)."""
        ...

    def go_live(self, connection_id: str, cursor: Cursor, pending_seen: int) -> bool: ...

    def clear_overflow(self, connection_id: str) -> None: ...

    def mark_end(self, connection_id: str, end: dict[str, Any]) -> bool: ...

    def open_stream(self, ecs_task_id: str, execution_id: str) -> StreamRecord: ...

    def get_stream(self, ecs_task_id: str) -> StreamRecord | None: ...

    def claim(self, ecs_task_id: str, stream: str, expected: Position | None, new: Position) -> bool: ...

    def end_stream(self, ecs_task_id: str) -> StreamRecord | None: ...

    def ping(self) -> None: ...


class Sockets(Protocol):
    """API Gateway's websocket management API."""

    def post(self, endpoint: str, connection_id: str, data: str) -> bool:
        """False when the connection is gone."""
        ...

    def close(self, endpoint: str, connection_id: str) -> None: ...

    def warm(self) -> None: ...


class Starter(Protocol):
    """Starts the logs function asynchronously with a payload (subscriptions made on $connect)."""

    def start(self, payload: dict[str, Any]) -> None: ...
