"""The rules of idempotency keys: the header's syntax, the scope of a key, what "the same body"
is, which answers are kept; and the utility that keeps them on AWS stays off the cold start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.domain.errors import ValidationError
from chalicelib.domain.idempotency import HEADER, NO_BODY, Answer, body_fingerprint, scoped_key, validate_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("key", ["a", "0190e0a4-0000-7000-8000-00000000abcd", "order:42/retry#1", "!" * 255,
                                 "~{}[]\"'\\"])
def test_visible_ascii_keys_of_1_to_255_characters_are_taken_as_given(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "x" * 256, "two words", " padded", "tab\there", "line\nbreak", "clé", "\x7f"])
def test_other_keys_are_refused_naming_the_header_and_the_rule(key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate_key(key)
    assert refused.value.field == HEADER
    assert "1 to 255 visible ASCII characters" in refused.value.message


def test_a_key_is_scoped_to_its_method_and_path() -> None:
    keys = {scoped_key("POST", "/tasks/a", "k"), scoped_key("POST", "/tasks/b", "k"),
            scoped_key("PUT", "/tasks/a", "k"), scoped_key("post", "/tasks/a", "k")}
    assert len(keys) == 3


def test_the_same_body_is_the_same_json_whatever_its_key_order_and_spacing() -> None:
    assert body_fingerprint({"image": "ubuntu", "command": "true", "envs": {"B": "2", "A": "1"}}) == \
        body_fingerprint({"envs": {"A": "1", "B": "2"}, "command": "true", "image": "ubuntu"})


def test_another_value_is_another_body() -> None:
    fingerprints = {body_fingerprint({"retries": 1}), body_fingerprint({"retries": 1.0}),
                    body_fingerprint({"retries": "1"}), body_fingerprint({}), NO_BODY}
    assert len(fingerprints) == 5


def test_only_successes_are_kept() -> None:
    assert [status for status in (200, 201, 204, 299, 300, 400, 409, 500, 503) if Answer(status, "").kept] == \
        [200, 201, 204, 299]


def test_an_answer_survives_its_json_form() -> None:
    answer = Answer(201, '{"é": 1}', "application/json; charset=utf-8")
    assert Answer.from_json(answer.to_json()) == answer


def test_importing_the_app_does_not_import_the_idempotency_utility() -> None:
    """Only a request that carries an Idempotency-Key pays for it on a cold start."""
    probe = "import sys, app; print(any(m.startswith('aws_lambda_powertools.utilities.idempotency') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
