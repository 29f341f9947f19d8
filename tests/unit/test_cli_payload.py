"""The `run` command's job body: options become payload keys, and a bad JSON option is a usage
error naming the option."""
from __future__ import annotations

import pytest
from fastlane_cli.errors import CliError
from fastlane_cli.main import build_payload

NONE: dict[str, tuple[str, ...]] = {}


def body(metadata: tuple[str, ...] = (), payload: str | None = None, **options):
    return build_payload("ubuntu", ("make", "build"), (), options.get("retries"), None, None, None, None, None, None,
                         metadata, NONE, NONE, payload)


def test_metadata_comes_as_json_objects_and_pairs_merged():
    assert body(('{"team": "jobs", "n": 2}', "owner=ana"))["metadata"] == {"team": "jobs", "n": 2, "owner": "ana"}


def test_payload_keys_are_added_but_never_replace_image_or_command():
    made = body(payload='{"retry": {"attempts": 2}, "image": "other"}')
    assert made["retry"] == {"attempts": 2} and made["image"] == "ubuntu" and made["command"] == "make build"


@pytest.mark.parametrize(("metadata", "payload", "said"), [
    (("{not json",), None, "--metadata is not valid JSON"),
    (("[1, 2]",), None, "--metadata '[1, 2]' must be KEY=VALUE"),
    ((), "{nope", "--payload is not valid JSON"),
    ((), "[1]", "--payload must be a JSON object of payload keys"),
])
def test_bad_json_is_a_usage_error_naming_the_option(metadata, payload, said):
    with pytest.raises(CliError) as caught:
        body(metadata, payload)
    assert said in str(caught.value)
