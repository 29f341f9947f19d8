"""Validation of job payloads: each rule, with the field it names."""
from __future__ import annotations

import pytest

from chalicelib.domain.errors import ValidationError
from chalicelib.domain.payload import (
    IMAGE_AND_COMMAND,
    ONE_SCHEDULE,
    UNPARSABLE,
    parse_json_object,
    redact_envs,
    validate_job_payload,
    validate_task_id,
    validate_uuid,
)

NOW = 1_800_000_000.0


def validate(**payload):
    base = {"image": "ubuntu", "command": "echo hi"}
    base.update(payload)
    return validate_job_payload(base, max_timeout=1800, max_retries=100, clock=lambda: NOW)


def rejected(**payload) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(**payload)
    return info.value


def test_minimal_payload_runs_now_with_defaults():
    spec = validate()
    assert (spec.image, spec.command, spec.envs, spec.retries, spec.scheduled) == ("ubuntu", "echo hi", {}, 0, False)


@pytest.mark.parametrize("image", ["ubuntu", "ubuntu:22.04", "registry.local:5000/team/app:1.2",
                                   "alpine@sha256:" + "a" * 64, "ghcr.io/org/tool"])
def test_accepts_image_references(image):
    assert validate(image=image).image == image


@pytest.mark.parametrize("image", ["UPPER", "has space", "name:", ":tag", "a@sha256:zz", 42])
def test_rejects_malformed_images(image):
    assert rejected(image=image).field == "image"


@pytest.mark.parametrize("missing", ["image", "command"])
def test_missing_image_or_command_uses_the_original_message(missing):
    payload = {"image": "ubuntu", "command": "ls"}
    del payload[missing]
    with pytest.raises(ValidationError) as info:
        validate_job_payload(payload, max_timeout=1800, max_retries=100)
    assert info.value.message == IMAGE_AND_COMMAND
    assert info.value.field == missing


def test_command_with_unbalanced_quotes_is_rejected():
    error = rejected(command="echo 'oops")
    assert error.field == "command" and "split" in error.message


def test_envs_must_map_names_to_strings():
    assert rejected(envs=["A"]).field == "envs"
    assert rejected(envs={"PORT": 8080}).field == "envs.PORT"
    assert rejected(envs={"1BAD": "x"}).field == "envs.1BAD"
    assert validate(envs={"PORT": "8080"}).envs == {"PORT": "8080"}


def test_command_and_envs_over_the_ecs_override_limit_are_rejected_naming_the_limit():
    error = rejected(envs={"BIG": "x" * 9000})
    assert error.field == "envs" and "8192" in error.message


@pytest.mark.parametrize("metadata", ["text", [1], 3])
def test_metadata_must_be_an_object(metadata):
    assert rejected(metadata=metadata).field == "metadata"


@pytest.mark.parametrize("retries", [-1, 1.5, "3", True, 101])
def test_retries_must_be_a_bounded_non_negative_integer(retries):
    assert rejected(retries=retries).field == "retries"


@pytest.mark.parametrize("timeout", [0, -5, "10", 1801])
def test_timeout_must_be_positive_and_under_the_ceiling(timeout):
    assert rejected(timeout=timeout).field == "timeout"


def test_expiration_in_the_past_is_rejected():
    assert rejected(expiration=NOW - 1).field == "expiration"
    assert validate(expiration=NOW + 60).expiration == NOW + 60


def test_only_one_schedule_may_be_given():
    error = rejected(startIn="10s", cron="* * * * *")
    assert error.message == ONE_SCHEDULE


@pytest.mark.parametrize("start_in", ["10", "abc", "0s", "1d", "-5s"])
def test_unparsable_durations_are_rejected(start_in):
    assert rejected(startIn=start_in).field == "startIn"


@pytest.mark.parametrize("cron", ["* * * *", "61 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *", "x * * * *"])
def test_bad_cron_expressions_are_rejected(cron):
    assert rejected(cron=cron).field == "cron"


def test_cron_with_a_timezone_is_scheduled():
    spec = validate(cron="0 9 * * mon-fri", timezone="Europe/Paris")
    assert spec.scheduled and spec.timezone == "Europe/Paris"


def test_unknown_timezone_is_rejected():
    assert rejected(cron="* * * * *", timezone="Mars/Olympus").field == "timezone"


def test_notify_and_webhooks_are_checked_per_event():
    assert rejected(notify={"begins": ["a@b.io"]}).field == "notify.begins"
    assert rejected(notify={"fails": ["not-an-address"]}).field == "notify.fails"
    assert rejected(webhooks={"fails": [{"url": "ftp://x"}]}).field == "webhooks.fails[0].url"
    assert rejected(webhooks={"fails": [{"url": "http://x", "retries": -1}]}).field == "webhooks.fails[0].retries"
    spec = validate(webhooks={"finishes": [{"url": "https://hooks.test/x", "headers": {"A": "b"}, "retries": 2}]})
    assert spec.webhooks["finishes"][0].retries == 2


def test_body_must_be_a_json_object():
    for body in (b"", b"nope", b"[1]", b"\xff"):
        with pytest.raises(ValidationError) as info:
            parse_json_object(body)
        assert info.value.message == UNPARSABLE


@pytest.mark.parametrize("task_id", ["", "a/b", "x" * 256, "sp ace"])
def test_task_ids_follow_the_charset(task_id):
    with pytest.raises(ValidationError):
        validate_task_id(task_id)


def test_uuid_is_normalised_and_checked():
    assert validate_uuid("5A023792-1445-44E9-8A8B-CFE5AD05D1C6", "jobId") == "5a023792-1445-44e9-8a8b-cfe5ad05d1c6"
    with pytest.raises(ValidationError):
        validate_uuid("not-a-uuid", "jobId")


def test_secret_looking_env_names_are_redacted():
    envs = {"DB_PASSWORD": "p", "API_KEY": "k", "Client_Id": "c", "HOST": "h"}
    assert redact_envs(envs, ("password", "key", "secret", "client_id")) == {
        "DB_PASSWORD": "***", "API_KEY": "***", "Client_Id": "***", "HOST": "h"}
