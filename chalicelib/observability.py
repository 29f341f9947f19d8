"""Structured logs and metrics (aws-lambda-powertools), shared by every handler."""
from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled


class _Metrics(Metrics):
    """powertools' Metrics, keeping nothing while metrics are disabled (POWERTOOLS_METRICS_DISABLED,
    as the local runtime sets it). Disabled, powertools still collects every value, never clears
    them on flush, and prints the whole set as an EMF line on stdout each time one metric reaches
    100 values: a long-running process would pay for metrics nobody reads and print them anyway."""

    def add_metric(self, name: str, unit: MetricUnit | str, value: float,
                   resolution: MetricResolution | int = 60) -> None:
        if not is_metrics_disabled():
            super().add_metric(name=name, unit=unit, value=value, resolution=resolution)


# The `service` dimension of every metric: the deployment template sets it per stage
# (fastlane-<stage>), so stages that share an account keep their metrics apart.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "fastlane"
logger = Logger(service=SERVICE)
metrics: Metrics = _Metrics(namespace="Fastlane", service=SERVICE)

__all__ = ["logger", "metrics", "MetricUnit"]
