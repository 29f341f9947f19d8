"""Notification rules that need no AWS and no network: which addresses webhooks may reach, the
signature, which notifications an execution's start or end calls for, retries and subjects."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from chalicelib.adapters.webhooks import Refused, checked_addresses, post, refusal
from chalicelib.domain.messages import decode_notification, to_dict
from chalicelib.domain.model import Execution, Hook, Job, JobSpec
from chalicelib.domain.model import ExecutionStatus as S
from chalicelib.domain.webhooks import request_headers, sign, signature_matches
from chalicelib.services.notify import events_for, notification_messages, outcome, retry_delay

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "169.254.169.254": "link-local (instance metadata)",
    "169.254.10.1": "link-local",
    "fe80::1": "link-local",
    "10.0.0.5": "private",
    "172.16.3.4": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "fd00:ec2::254": "private",  # the instance metadata service over IPv6
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "100.64.0.1": "non-global",  # carrier-grade NAT
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:169.254.169.254": "link-local (instance metadata)",
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "2002:a00:1::1": "private",  # 6to4 of 10.0.0.1
}


@pytest.mark.parametrize("address,reason", sorted(REFUSED.items()))
def test_addresses_inside_the_network_are_refused(address, reason):
    assert refusal(address) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_are_allowed(address):
    assert refusal(address) is None


def test_every_resolved_address_is_checked():
    def resolver(host, port):
        return ["93.184.215.14", "10.1.2.3"]

    with pytest.raises(Refused, match=r"hooks\.example resolves to 10\.1\.2\.3, a private address"):
        checked_addresses("hooks.example", 443, False, resolver)


def test_private_addresses_are_allowed_when_configured():
    assert checked_addresses("localhost", 80, True, lambda h, p: ["127.0.0.1", "::1"]) == ["127.0.0.1", "::1"]


def test_a_refused_hook_is_never_connected_to_and_not_retried():
    result = post("http://metadata.internal/latest/meta-data/", b"{}", {}, timeout=1,
                  resolver=lambda host, port: ["169.254.169.254"])
    assert not result.ok and result.permanent and result.address is None
    assert "169.254.169.254, a link-local (instance metadata) address" in result.error


def test_a_url_that_is_not_http_is_refused():
    result = post("ftp://example.com/x", b"{}", {}, timeout=1, resolver=lambda h, p: ["93.184.215.14"])
    assert result.permanent and "http" in result.error


def test_the_signature_is_a_timestamp_and_the_hex_hmac_sha256_of_it_and_the_exact_body():
    body = b'{"event":"succeeds"}'
    header = sign("s3cret", body, timestamp=1800000000)
    expected = hmac.new(b"s3cret", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"
    assert signature_matches("s3cret", body, header, now=1800000010)
    assert not signature_matches("s3cret", body + b" ", header, now=1800000010)
    assert not signature_matches("other", body, header, now=1800000010)


def test_a_replayed_signature_is_refused_past_the_tolerance():
    body = b"{}"
    header = sign("s", body, timestamp=1800000000)
    assert signature_matches("s", body, header, now=1800000000 + 299)
    assert not signature_matches("s", body, header, now=1800000000 + 301)
    assert not signature_matches("s", body, header, now=1800000000 - 301)
    # the time is signed: moving it breaks the signature
    moved = header.replace("t=1800000000", "t=1800000300")
    assert not signature_matches("s", body, moved, now=1800000300)
    assert not signature_matches("s", body, "sha256=" + header.split("v1=")[1], now=1800000000)


def test_a_hook_cannot_replace_the_content_type_or_the_signature():
    headers = request_headers({"Authorization": "Bearer t", "content-type": "text/plain",
                               "X-Fastlane-Signature": "forged", "Host": "evil"},
                              event="fails", delivery="k", body=b"{}", secret="s", user_agent="ua", timestamp=1800000000)
    assert headers["Authorization"] == "Bearer t"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Fastlane-Signature"] == sign("s", b"{}", timestamp=1800000000)
    assert headers["X-Fastlane-Event"] == "fails" and headers["X-Fastlane-Delivery"] == "k"
    assert not any(k.lower() == "host" for k in headers) and "content-type" not in headers


def test_without_a_secret_there_is_no_signature():
    headers = request_headers({}, event="fails", delivery="k", body=b"{}", secret="", user_agent="ua")
    assert "X-Fastlane-Signature" not in headers


@pytest.mark.parametrize("announced,status,events", [
    ("started", S.RUNNING, ("starts",)),
    ("ended", S.DONE, ("succeeds", "finishes")),
    ("ended", S.FAILED, ("fails", "finishes")),
    ("ended", S.TIMEDOUT, ("fails", "finishes")),
    ("ended", S.EXPIRED, ("finishes",)),
    ("ended", S.STOPPED, ("finishes",)),
])
def test_which_events_an_announcement_calls_for(announced, status, events):
    assert events_for(announced, status) == events


def _job(**spec) -> Job:
    return Job(task_id="t", job_id="j", spec=JobSpec(image="ubuntu", command="true", **spec), created_at=1.0,
               last_modified_at=1.0)


def _execution(status: S, exit_code: int | None = None) -> Execution:
    return Execution(task_id="t", job_id="j", execution_id="e", image="ubuntu", command="true", status=status,
                     created_at=1.0, exit_code=exit_code)


def test_one_message_per_hook_and_per_recipient_list():
    job = _job(webhooks={"succeeds": [Hook("https://a.example/1"), Hook("https://a.example/2", retries=3)],
                         "fails": [Hook("https://a.example/f")], "finishes": [Hook("https://a.example/3")]},
               notify={"succeeds": ["a@x.io", "b@x.io"], "finishes": ["c@x.io"], "starts": ["d@x.io"]})
    typed = notification_messages("ended", job, _execution(S.DONE, 0), "https://fastlane.example/")
    messages = [to_dict(m) for m in typed]  # as they travel on the notify queue
    assert [(m["kind"], m["event"], m.get("hook", {}).get("url") or m["to"]) for m in messages] == [
        ("webhook", "succeeds", "https://a.example/1"),
        ("webhook", "succeeds", "https://a.example/2"),
        ("email", "succeeds", ["a@x.io", "b@x.io"]),
        ("webhook", "finishes", "https://a.example/3"),
        ("email", "finishes", ["c@x.io"]),
    ]
    assert all(m["attempt"] == 1 and m["baseUrl"] == "https://fastlane.example" and m["status"] == "done"
               for m in messages)
    assert messages[1]["hook"] == {"url": "https://a.example/2", "headers": {}, "retries": 3}
    assert len({m.delivery_key for m in typed}) == 5


def test_no_message_when_the_job_asks_for_nothing():
    assert notification_messages("started", _job(), _execution(S.RUNNING)) == []


def test_the_delivery_key_names_the_execution_the_notification_and_the_attempt():
    message = decode_notification({"executionId": "e", "jobId": "j", "kind": "webhook", "event": "fails", "index": 2,
                                   "attempt": 3, "hook": {"url": "https://a.example/f"}})
    assert message.delivery_key == "e/webhook/fails/2/3"


def test_retries_back_off_exponentially_up_to_the_longest_sqs_delay():
    assert [retry_delay(n, 5) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay(20, 5) == 900


@pytest.mark.parametrize("event,status,exit_code,said", [
    ("starts", S.RUNNING, None, "started"),
    ("succeeds", S.DONE, 0, "done, exit code 0"),
    ("fails", S.FAILED, 3, "failed, exit code 3"),
    ("fails", S.FAILED, None, "failed"),
    ("fails", S.TIMEDOUT, 137, "timed out"),
    ("finishes", S.EXPIRED, None, "expired"),
    ("finishes", S.STOPPED, 143, "stopped"),
])
def test_what_a_subject_says_happened(event, status, exit_code, said):
    assert outcome(event, _execution(status, exit_code)) == said


@pytest.mark.parametrize("url,shown", [
    ("https://hooks.slack.com/services/T0001/B0002/s3cret", "https://hooks.slack.com/services/\u2026"),
    ("https://discord.com/api/webhooks/123/t0ken", "https://discord.com/api/\u2026"),
    ("https://webhook.example/0b6ee6c2-8f0e-4bd5-a1a5-6a4c2b1d9e3f", "https://webhook.example/\u2026"),
    ("https://ci.example.com/done?key=s3cret", "https://ci.example.com/\u2026"),
    ("http://hooks.example:8080/a/b#frag", "http://hooks.example:8080/a/\u2026"),
    ("https://hooks.example", "https://hooks.example"),
    ("https://hooks.example/", "https://hooks.example/"),
    ("https://hooks.example/?token=s3cret", "https://hooks.example/\u2026"),
    ("http://[2001:db8::1]:8443/x/y/z", "http://[2001:db8::1]:8443/x/\u2026"),
])
def test_a_webhook_url_is_shown_with_scheme_host_and_first_segment_only(url, shown):
    from chalicelib.domain.redaction import redact_url

    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # what is shown is shown again as it is


def test_urls_quoted_in_an_error_are_redacted():
    from chalicelib.domain.redaction import redact_urls

    assert redact_urls("redirects are not followed (Location: https://hooks.example/services/T/B/s3cret)") == \
        "redirects are not followed (Location: https://hooks.example/services/\u2026)"


def test_a_batch_counts_its_time_from_the_lambda_context_or_else_the_configured_timeout():
    import json
    from pathlib import Path

    from chalicelib.handlers import FUNCTION_TIMEOUT_SECONDS, _time_left

    config = json.loads((Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text())
    assert FUNCTION_TIMEOUT_SECONDS == config["lambda_timeout"]

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 1500

    assert _time_left(Context())() == 1.5
    assert FUNCTION_TIMEOUT_SECONDS - 1 < _time_left(None)() <= FUNCTION_TIMEOUT_SECONDS
