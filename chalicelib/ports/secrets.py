"""The secrets port: reads one secret's values."""
from __future__ import annotations

from typing import Protocol


class SecretReader(Protocol):
    def __call__(self, secret_id: str) -> dict[str, str]: ...
