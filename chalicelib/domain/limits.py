"""The platform limits the service lives within, each defined once."""
from __future__ import annotations

# SQS: a message can be delayed by whole seconds, at most 15 minutes.
SQS_MAX_DELAY_SECONDS = 900
# SQS: a batch send or receive carries at most 10 messages.
SQS_MAX_BATCH = 10
# ECS: RunTask overrides (command, environment, ...) may be at most 8 KiB as JSON.
ECS_MAX_OVERRIDE_BYTES = 8192
# ECS: DescribeTasks takes at most 100 tasks a call.
ECS_DESCRIBE_BATCH = 100
# ECS: a StopTask reason is at most 255 characters.
ECS_MAX_REASON_CHARS = 255
# ECS: a tag value is at most 256 characters.
ECS_MAX_TAG_CHARS = 256
# What the service keeps of a platform error message on an execution.
MAX_ERROR_CHARS = 4000
