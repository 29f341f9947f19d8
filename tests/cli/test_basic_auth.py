"""`fastlane run` against a local runtime with Basic auth on: the REST calls carry the
credentials, and so does the live-log websocket (its handshake, and the stream token the
service gives an authorized client); wrong or missing credentials are one line and exit 120."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.conftest import Runtime, running_runtime

from .conftest import Cli, one_line

pytestmark = [pytest.mark.system, pytest.mark.xdist_group("cli")]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A runtime of its own with Basic auth on."""
    credentials = {"Authorization": "Basic " + base64.b64encode(b"ada:lovelace").decode()}
    with running_runtime(tmp_path_factory.mktemp("cli-basic"),
                         {"BASIC_AUTH_USERNAME": "ada", "BASIC_AUTH_PASSWORD": "lovelace"}, headers=credentials) as rt:
        yield rt


def test_run_with_basic_auth_follows_the_job(runtime: Runtime, tmp_path: Path) -> None:
    cli = Cli(runtime.url, tmp_path, {"FASTLANE_USER": "ada", "FASTLANE_PASSWORD": "lovelace"})
    done = cli("run", "-t", "basic", "ubuntu", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")

    wrong = cli("ls", "--password", "nope")
    assert wrong.returncode == 120 and "401" in one_line(wrong.stderr)
    anonymous = cli("status", env={"FASTLANE_USER": "", "FASTLANE_PASSWORD": ""})
    assert anonymous.returncode == 120 and "--user/--password" in one_line(anonymous.stderr)
