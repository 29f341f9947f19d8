"""Where the service is and how to authenticate: from the command's flags, then the environment,
then a small TOML file, in that order (docs/cli.md#configuration)."""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import USAGE, CliError

DEFAULT_URL = "http://127.0.0.1:10000"  # the local runtime `make run` starts
DEFAULT_TASK = "default"
AUTH_MODES = ("none", "basic", "api-key", "sigv4")

# Each setting, its environment variable; the config file uses the setting's name as its key.
ENVIRONMENT = {
    "url": "FASTLANE_URL",
    "user": "FASTLANE_USER",
    "password": "FASTLANE_PASSWORD",
    "api_key": "FASTLANE_API_KEY",
    "aws_profile": "FASTLANE_AWS_PROFILE",
    "aws_region": "FASTLANE_AWS_REGION",
    "auth": "FASTLANE_AUTH",
    "ws_url": "FASTLANE_WS_URL",
    "task": "FASTLANE_TASK",
}
_EXECUTE_API = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def config_path() -> Path:
    """FASTLANE_CONFIG, else $XDG_CONFIG_HOME/fastlane/config.toml (~/.config when unset)."""
    named = os.environ.get("FASTLANE_CONFIG")
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fastlane" / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """The file's settings; a missing file is none. Unknown keys and non-string values are
    refused with the line to fix, rather than silently ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CliError(f"cannot read the config file {path}: {error.strerror}", USAGE) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CliError(f"the config file {path} is not valid TOML: {error}", USAGE) from None
    settings: dict[str, str] = {}
    for key, value in data.items():
        if key not in ENVIRONMENT:
            raise CliError(f"the config file {path} has an unknown key '{key}'; known: {', '.join(ENVIRONMENT)}", USAGE)
        if not isinstance(value, str):
            raise CliError(f"the config file {path}: '{key}' must be a string", USAGE)
        settings[key] = value
    return settings


def region_of(url: str) -> str | None:
    """The AWS region an API Gateway URL names (https://<id>.execute-api.<region>.amazonaws.com/...)."""
    from urllib.parse import urlsplit

    match = _EXECUTE_API.match((urlsplit(url).hostname or "").lower())
    return match.group(1) if match else None


@dataclass(frozen=True)
class Settings:
    url: str = DEFAULT_URL
    auth: str = "none"
    user: str | None = None
    password: str | None = None
    api_key: str | None = None
    aws_profile: str | None = None
    aws_region: str | None = None
    ws_url: str | None = None
    task: str = DEFAULT_TASK
    sources: dict[str, str] = field(default_factory=dict)  # where each setting came from, for messages


def _auth_of(layer: dict[str, str]) -> str | None:
    """The auth mode one layer (flags, environment or file) asks for, if any."""
    if layer.get("auth"):
        return layer["auth"]
    if layer.get("user") or layer.get("password"):
        return "basic"
    if layer.get("api_key"):
        return "api-key"
    if layer.get("aws_profile"):
        return "sigv4"
    return None


def resolve(flags: dict[str, Any], environ: dict[str, str] | None = None, file: Path | None = None) -> Settings:
    """The settings: each from the flags if given, else the environment, else the config file.
    The auth mode is the first layer's that names one (--auth, or the credentials it gives:
    user/password for Basic, an API key, an AWS profile for SigV4); none named, SigV4 for an
    API Gateway URL (IAM is the default deployment) and no auth otherwise."""
    env = os.environ if environ is None else environ
    path = file if file is not None else config_path()
    layers: list[tuple[str, dict[str, str]]] = [
        ("flag", {k: str(v) for k, v in flags.items() if v not in (None, "")}),
        ("environment", {k: env[name] for k, name in ENVIRONMENT.items() if env.get(name)}),
        (str(path), read_config_file(path)),
    ]
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if key not in values:
                values[key] = value
                sources[key] = source
    auth = next((mode for _, layer in layers if (mode := _auth_of(layer))), None)
    url = values.get("url", DEFAULT_URL).rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        where = sources.get("url", "the default")
        raise CliError(f"the service URL '{url}' (from {where}) must start with http:// or https://", USAGE)
    if auth is None:
        auth = "sigv4" if region_of(url) else "none"
    if auth not in AUTH_MODES:
        raise CliError(f"unknown auth mode '{auth}'; use one of {', '.join(AUTH_MODES)}", USAGE)
    if auth == "basic" and not (values.get("user") and values.get("password")):
        missing = "password" if values.get("user") else "user"
        raise CliError(f"Basic auth needs a user and a password: give --{missing} (or FASTLANE_{missing.upper()})", USAGE)
    if auth == "api-key" and not values.get("api_key"):
        raise CliError("API key auth needs a key: give --api-key (or FASTLANE_API_KEY)", USAGE)
    return Settings(url=url, auth=auth, user=values.get("user"), password=values.get("password"),
                    api_key=values.get("api_key"), aws_profile=values.get("aws_profile"),
                    aws_region=values.get("aws_region"), ws_url=values.get("ws_url"),
                    task=values.get("task", DEFAULT_TASK), sources=sources)
