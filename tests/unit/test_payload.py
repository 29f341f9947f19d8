"""Validation of job payloads: each rule, with the field it names."""
from __future__ import annotations

import pytest

from chalicelib.config import DEFAULT_SECRET_ENV_PATTERNS
from chalicelib.domain.errors import TooLarge, ValidationError
from chalicelib.domain.json_text import MAX_JSON_DEPTH, UNPARSABLE, json_depth, parse_json_object
from chalicelib.domain.payload import (
    IMAGE_AND_COMMAND,
    ONE_SCHEDULE,
    override_bytes,
    stored_bytes,
    validate_job_payload,
    validate_task_id,
    validate_uuid,
)
from chalicelib.domain.redaction import redact_envs, redact_headers

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


# hostile input: each case found against the running service, pinned as a rule ------------------



def parse_error(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_json_object(body)
    return info.value


def test_json_nested_past_the_limit_is_refused_without_recursing():
    deep = b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    error = parse_error(deep)
    assert error.field == "body" and f"at most {MAX_JSON_DEPTH} levels" in error.message
    assert json_depth('{"a": "[[[[[[{{{{"}') == 1  # brackets inside strings do not count
    assert parse_json_object(b'{"a": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}")


@pytest.mark.parametrize("number", [b"9" * 400, b"-" + b"9" * 21, b"1e400", b"-1e999", b"0." + b"1" * 60])
def test_numbers_too_long_or_infinite_are_refused(number):
    error = parse_error(b'{"image": "ubuntu", "command": "true", "timeout": ' + number + b"}")
    assert error.field == "body" and ("digits" in error.message or "finite" in error.message)


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    error = parse_error(b'{"timeout": ' + constant + b"}")
    assert error.field == "body" and constant.decode().lstrip("-") in error.message


def test_a_64_bit_integer_is_still_a_number():
    assert parse_json_object(b'{"n": 18446744073709551615}')["n"] == 2 ** 64 - 1


@pytest.mark.parametrize("field,value", [("image", "ubuntu\n"), ("image", "ubuntu\n:latest")])
def test_a_trailing_newline_does_not_pass_a_pattern(field, value):
    assert rejected(**{field: value}).field == field


def test_env_names_and_addresses_match_whole():
    assert rejected(envs={"PATH\n": "x"}).field == "envs.PATH\n"
    assert rejected(notify={"fails": ["ops@example.com\n"]}).field == "notify.fails"
    assert rejected(envs={"FASTLANE_JOB_ID": "x"}).field == "envs.FASTLANE_JOB_ID"
    assert rejected(envs={"A": "nul\x00"}).field == "envs.A"


@pytest.mark.parametrize("start_in", ["١٠s", "10s\n", " 10s", "1" * 12 + "s"])
def test_start_in_takes_ascii_digits_only(start_in):
    assert rejected(startIn=start_in).field == "startIn"


@pytest.mark.parametrize("cron", ["* * * * ٣", "٥ * * * *", "* * * * *\n", "0 0 L * *", "0 0 * * 1#2", "0 0 * * 5L",
                                  "0 0 ? * *", "x" * 300])
def test_cron_takes_plain_unix_fields_in_ascii_only(cron):
    assert rejected(cron=cron).field == "cron"


@pytest.mark.parametrize("url", ["http://hooks.test/a b", "http://hooks.test/a\r\nX: y", "http://hooks.test/\n",
                                 "http://us er@hooks.test/", "http://hooks.test/" + "a" * 2048, "javascript:alert(1)"])
def test_webhook_urls_hold_no_spaces_or_control_characters(url):
    assert rejected(webhooks={"fails": [{"url": url}]}).field == "webhooks.fails[0].url"


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "nul\x00", " leading", "trailing "])
def test_webhook_header_values_hold_no_line_breaks_or_edge_spaces(value):
    error = rejected(webhooks={"fails": [{"url": "https://hooks.test/", "headers": {"Authorization": value}}]})
    assert error.field == "webhooks.fails[0].headers.Authorization"


def test_webhook_header_names_are_tokens():
    error = rejected(webhooks={"fails": [{"url": "https://hooks.test/", "headers": {"Bad Name": "x"}}]})
    assert error.field == "webhooks.fails[0].headers.Bad Name"
    spec = validate(webhooks={"fails": [{"url": "https://hooks.test/", "headers": {"Authorization": "Bearer a b"}}]})
    assert spec.webhooks["fails"][0].headers == {"Authorization": "Bearer a b"}


@pytest.mark.parametrize("task_id", ["..", ".", "#tasks", "#pool:default", "a\n", "ü"])
def test_task_ids_that_are_path_segments_or_store_keys_are_refused(task_id):
    with pytest.raises(ValidationError) as info:
        validate_task_id(task_id)
    assert info.value.field == "taskId"


@pytest.mark.parametrize("job_id", ["{5a023792-1445-44e9-8a8b-cfe5ad05d1c6}", "5a0237921445" + "44e98a8bcfe5ad05d1c6",
                                    "urn:uuid:5a023792-1445-44e9-8a8b-cfe5ad05d1c6",
                                    "5a023792-1445-44e9-8a8b-cfe5ad05d1c6\n"])
def test_only_the_hyphenated_uuid_form_is_an_id(job_id):
    with pytest.raises(ValidationError):
        validate_uuid(job_id, "jobId")


def test_the_override_limit_counts_what_ecs_counts():
    # just under the old check (command and envs alone), over once the service's variables and the
    # JSON around them are counted
    import json

    envs = {"BIG": "x" * 8100}
    old_count = len(json.dumps(["true"])) + len(json.dumps([{"name": k, "value": v} for k, v in envs.items()]))
    assert old_count < 8192 < override_bytes(["true"], envs)
    error = rejected(envs=envs)
    assert error.field == "envs" and "8192" in error.message and "service's own variables" in error.message


def test_the_override_count_matches_the_runner_request():
    """The count is of the structure chalicelib/adapters/ecs.py sends (a drift would show here)."""
    import json

    from chalicelib.adapters.ecs import EcsRunner
    from chalicelib.config import Settings
    from chalicelib.domain.model import Execution, ExecutionStatus, JobSpec
    from chalicelib.domain.pools import Pool

    sent = {}

    class Ecs:
        def describe_task_definition(self, **_):
            return {"taskDefinition": {"taskDefinitionArn": "arn:td", "containerDefinitions": [{"image": "ubuntu"}]}}

        def run_task(self, **request):
            sent.update(request)
            return {"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:1:task/c/abc"}], "failures": []}

    spec = JobSpec(image="ubuntu", command="echo hi", envs={"A": "b"})
    job_id, execution_id = "0" * 8 + "-0000-7000-8000-" + "0" * 12, "1" * 8 + "-1111-7111-8111-" + "1" * 12
    execution = Execution(task_id="t" * 255, job_id=job_id, execution_id=execution_id, image="ubuntu",
                          command="echo hi", status=ExecutionStatus.ENQUEUED, created_at=0)
    pool = Pool(name="p", match=".*", cluster="c", cpu="16384", memory="122880")
    EcsRunner(Ecs(), Settings(region="us-east-1", tasks_table="t", jobs_table="j", executions_table="e",
                              jobs_queue_url="q")).run(execution, spec, pool)
    assert len(json.dumps(sent["overrides"], separators=(",", ":"))) == override_bytes(["echo", "hi"], {"A": "b"})


def test_a_body_that_would_be_stored_too_large_is_413():
    # 80,000 two-byte characters: 160 KB in the request, 480 KB as stored (each one a \\uXXXX escape)
    payload = {"image": "ubuntu", "command": "true", "metadata": {"text": "é" * 80_000}}
    with pytest.raises(TooLarge) as info:
        validate_job_payload(payload, max_timeout=1800, max_retries=100, clock=lambda: NOW, max_stored_bytes=256 * 1024)
    assert info.value.status == 413 and info.value.field == "body" and "as stored" in info.value.message
    spec = validate_job_payload({**payload, "metadata": {"text": "é" * 1000}}, max_timeout=1800, max_retries=100,
                                clock=lambda: NOW, max_stored_bytes=256 * 1024)
    assert stored_bytes(spec) > 6000


@pytest.mark.parametrize("field", ["timeout", "expiration", "startAt"])
def test_huge_numbers_in_time_fields_are_400_not_overflow(field):
    assert rejected(**{field: 10 ** 19}).field == field
    assert rejected(**{field: 1e300}).field == field


@pytest.mark.parametrize("name", ["API_TOKEN", "AWS_SESSION_TOKEN", "DB_PASS", "GITHUB_AUTH", "DB_PASSWORD", "MY_PWD",
                                  "SSH_PRIVATE_KEY", "TLS_CERT", "OAUTH_CLIENT_ID", "COOKIE_JAR", "AWS_CREDENTIALS",
                                  "PASSWD"])
def test_the_default_secret_names_are_those_of_the_api_contract(name):
    assert redact_envs({name: "s", "HOST": "h"}, DEFAULT_SECRET_ENV_PATTERNS) == {name: "***", "HOST": "h"}


def test_every_webhook_header_value_is_redacted():
    assert redact_headers({"Authorization": "Bearer x", "X-Trace": "1"}) == {"Authorization": "***", "X-Trace": "***"}
