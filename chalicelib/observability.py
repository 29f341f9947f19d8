"""Structured logs and metrics (aws-lambda-powertools), shared by every handler."""
from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

# The `service` dimension of every metric: the deployment template sets it per stage
# (fastlane-<stage>), so stages that share an account keep their metrics apart.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "fastlane"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="Fastlane", service=SERVICE)

__all__ = ["logger", "metrics", "MetricUnit"]
