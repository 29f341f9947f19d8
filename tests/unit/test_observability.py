"""Metrics (chalicelib/observability.py): emitted as EMF when enabled, as Lambda runs them; and
while disabled, as the local runtime runs them, neither kept nor printed however many there are."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chalicelib.observability import MetricUnit, metrics


@pytest.fixture(autouse=True)
def empty_metrics() -> Iterator[None]:
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def test_disabled_metrics_are_neither_kept_nor_printed(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "1")
    for _ in range(250):  # past powertools' 100 values of one metric, where it prints the set
        metrics.add_metric(name="JobsEnqueued", unit=MetricUnit.Count, value=1)
        if metrics.metric_set:
            metrics.flush_metrics()
    assert metrics.metric_set == {}
    assert capsys.readouterr().out == ""


def test_enabled_metrics_are_flushed_as_one_emf_line(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "0")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    for _ in range(3):
        metrics.add_metric(name="JobsEnqueued", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    emitted = json.loads(lines[0])
    assert emitted["JobsEnqueued"] == [1.0, 1.0, 1.0]
    assert emitted["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Fastlane"
    assert metrics.metric_set == {}
