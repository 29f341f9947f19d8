"""Structured logs and metrics (aws-lambda-powertools), shared by every handler."""
from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="fastlane")
metrics = Metrics(namespace="Fastlane", service="fastlane")

__all__ = ["logger", "metrics", "MetricUnit"]
