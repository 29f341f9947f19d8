"""Where the command line takes its settings from (flags, then the environment, then the config
file), its one-line failures that need no service, and what keeps it out of the Lambda package."""
from __future__ import annotations

import socket
from pathlib import Path

from .conftest import Cli, Recorder, one_line

ROOT = Path(__file__).resolve().parents[2]


def test_flags_then_environment_then_config_file(recorder: Recorder, tmp_path: Path) -> None:
    config = tmp_path / "config" / "fastlane" / "config.toml"  # the default place under XDG_CONFIG_HOME
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{recorder.url}/file"\napi_key = "from-file"\n')
    cli = Cli(f"{recorder.url}/env", tmp_path, {})

    assert cli("ls", env={"FASTLANE_URL": ""}).returncode == 0
    assert cli("ls").returncode == 0
    assert cli("ls", "--url", f"{recorder.url}/flag").returncode == 0
    assert cli("--url", f"{recorder.url}/before", "ls").returncode == 0  # before the command too
    assert [r.path.split("/")[1] for r in recorder.requests] == ["file", "env", "flag", "before"]
    assert all(r.headers.get("x-api-key") == "from-file" for r in recorder.requests)

    assert cli("ls", env={"FASTLANE_API_KEY": "from-env"}).returncode == 0
    assert recorder.requests[-1].headers["x-api-key"] == "from-env"
    assert cli("ls", "--user", "ada", "--password", "pw", env={"FASTLANE_API_KEY": "from-env"}).returncode == 0
    assert "x-api-key" not in recorder.requests[-1].headers  # the flags' Basic auth wins
    assert recorder.requests[-1].headers["Authorization"].startswith("Basic ")

    named = tmp_path / "other.toml"
    named.write_text('url = "http://127.0.0.1:1"\nflavour = "x"\n')
    unknown = cli("ls", env={"FASTLANE_CONFIG": str(named)})
    assert unknown.returncode == 2 and "unknown key 'flavour'" in one_line(unknown.stderr)


def test_failures_that_need_no_service_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cli = Cli(closed, tmp_path, {})
    down = cli("ls")
    assert down.returncode == 121 and "cannot reach the service" in one_line(down.stderr)
    follow = cli("logs", "-f", "t", "00000000-0000-7000-8000-000000000000")
    assert follow.returncode == 121 and "cannot reach the service" in one_line(follow.stderr)

    assert cli("ls", "--url", "ftp://x").returncode == 2
    half = cli("ls", "--user", "ada")
    assert half.returncode == 2 and "--password" in one_line(half.stderr)
    json_follow = cli("run", "--json", "ubuntu", "--", "true")
    assert json_follow.returncode == 2 and "--detach" in one_line(json_follow.stderr)
    missing = cli("run", "-e", "SURELY_NOT_SET_ANYWHERE", "ubuntu", "--", "true")
    assert missing.returncode == 2 and "SURELY_NOT_SET_ANYWHERE" in one_line(missing.stderr)
    no_region = cli("ls", "--auth", "sigv4")
    assert no_region.returncode == 2 and "--aws-region" in one_line(no_region.stderr)


def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    cli = Cli("http://127.0.0.1:1", tmp_path, {})
    for args in (["--help"], ["run", "--help"], ["logs", "--help"]):
        shown = cli(*args)
        assert shown.returncode == 0 and "Exit codes" in shown.stdout
        for code in ("119", "120", "121", "124", "125", "130"):
            assert code in shown.stdout
    assert cli("--version").stdout.strip() == "fastlane, version 0.1.0"


def test_the_command_line_stays_out_of_the_lambda_package() -> None:
    from chalice.deploy.packager import LambdaDeploymentPackager
    from chalice.utils import OSUtils

    packaged = [name for _, name in LambdaDeploymentPackager(OSUtils(), None, None)._iter_app_filenames(str(ROOT))]
    assert packaged and not [name for name in packaged if name.startswith(("cli/", "fastlane_cli"))]
    assert not (ROOT / "vendor").exists()  # Chalice would package all of it
    runtime = (ROOT / "requirements.txt").read_text().lower()
    for name in ("fastlane-cli", "./cli", "click", "rich"):
        assert name not in runtime
