"""Fixtures of the component tier shared by the engine's tests."""
from __future__ import annotations

import pytest

from tests.component.engine_support import FakeRunner, install_engine


@pytest.fixture
def runner(aws, monkeypatch) -> FakeRunner:
    """ECS stood in for by a recorder, behind the app's real engine and scheduling."""
    runner = FakeRunner()
    install_engine(monkeypatch, runner)
    return runner
