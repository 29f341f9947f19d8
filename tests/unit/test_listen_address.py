"""The local runtime runs any command posted to it: on an address other machines reach it starts
only behind Basic auth, or when the operator opts in to an open API, with a warning."""
from __future__ import annotations

import pytest

from infra.local.settings import check_listen_address, is_loopback

AUTH = ("BASIC_AUTH_USERNAME", "BASIC_AUTH_PASSWORD", "BASIC_AUTH_SECRET_ID", "ALLOW_UNAUTHENTICATED_REMOTE")


@pytest.fixture(autouse=True)
def no_auth(monkeypatch):
    for name in AUTH:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_start_open_and_quietly(host):
    assert is_loopback(host) and check_listen_address(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.0.2.10", "devbox.lan"])
def test_an_open_runtime_on_a_reachable_address_is_refused_saying_what_to_set(host):
    with pytest.raises(ValueError) as refused:
        check_listen_address(host)
    message = str(refused.value)
    assert "\n" not in message
    assert "BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD" in message and "ALLOW_UNAUTHENTICATED_REMOTE=true" in message


@pytest.mark.parametrize("auth", [{"BASIC_AUTH_USERNAME": "ana", "BASIC_AUTH_PASSWORD": "s3cret"},
                                  {"BASIC_AUTH_SECRET_ID": "fastlane/basic-auth"}])
def test_basic_auth_lets_it_listen_on_every_address(monkeypatch, auth):
    for name, value in auth.items():
        monkeypatch.setenv(name, value)
    assert check_listen_address("0.0.0.0") is None


def test_the_opt_in_starts_it_open_with_a_warning(monkeypatch):
    monkeypatch.setenv("ALLOW_UNAUTHENTICATED_REMOTE", "true")
    warning = check_listen_address("0.0.0.0")
    assert warning is not None and warning.startswith("WARNING") and "any command" in warning


def test_an_opt_in_that_is_not_yes_is_no(monkeypatch):
    monkeypatch.setenv("ALLOW_UNAUTHENTICATED_REMOTE", "false")
    with pytest.raises(ValueError):
        check_listen_address("0.0.0.0")


def test_on_the_aws_backend_basic_auth_is_not_enough(monkeypatch):
    """Its moto server and ECS stand-in listen on the same address and take no auth: an ECS RunTask
    runs a command as surely as a POST does."""
    monkeypatch.setenv("BASIC_AUTH_USERNAME", "ana")
    monkeypatch.setenv("BASIC_AUTH_PASSWORD", "s3cret")
    assert check_listen_address("127.0.0.1", "aws") is None
    with pytest.raises(ValueError) as refused:
        check_listen_address("0.0.0.0", "aws")
    assert "moto server and ECS stand-in" in str(refused.value) and "ALLOW_UNAUTHENTICATED_REMOTE=true" in str(refused.value)
    monkeypatch.setenv("ALLOW_UNAUTHENTICATED_REMOTE", "true")
    assert (check_listen_address("0.0.0.0", "aws") or "").startswith("WARNING")
