"""One botocore session for every AWS client of the process. Each new session reads and parses
the service models and the endpoint rules again (tens of ms a client, more on a Lambda's share
of a vCPU); a function that calls DynamoDB, SQS and ECS on its first request made three. A
session is not safe for two threads creating clients at once (the local runtime's threads do),
so clients are made under a lock; the clients themselves are thread-safe."""
from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_session: Any = None  # boto3.session.Session


def _boto3_session() -> Any:
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session()
    return _session


def create_client(service: str, **kwargs: Any) -> Any:
    with _lock:
        return _boto3_session().client(service, **kwargs)


def pynamodb_client(connection: Any) -> Any:
    """The DynamoDB client of a PynamoDB connection, made from the shared session."""
    with _lock:
        connection._local.session = _boto3_session()._session  # pinned pynamodb 6.1: its per-thread session
        return connection.client


def reset() -> None:
    """Forget the session: the next client reads the environment (region, endpoint, credentials)
    afresh, as tests that change it between runs need."""
    global _session
    with _lock:
        _session = None
