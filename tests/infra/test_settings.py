"""One source for each setting: defaults live in chalicelib/config.py; the deployment sets what
only it knows (its resources, in the template's Globals) and, in .chalice/config.json, only the
deliberate choices docs/deploy.md lists, never a copy of a default."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.infra.conftest import ROOT, load_merge_template

CHOICES = re.compile(r"<!-- deployment-choices.*?-->\n(.*?)<!-- /deployment-choices -->", re.S)


def chalice_config() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return loaded


def set_in_chalice_config() -> dict[str, str]:
    """Variable -> value, for every variable .chalice/config.json sets (top level, stages, functions)."""
    config = chalice_config()
    found: dict[str, str] = dict(config.get("environment_variables", {}))
    for stage in config.get("stages", {}).values():
        found.update(stage.get("environment_variables", {}))
        for function in stage.get("lambda_functions", {}).values():
            found.update(function.get("environment_variables", {}))
    for function in config.get("lambda_functions", {}).values():
        found.update(function.get("environment_variables", {}))
    return found


def deployment_choices() -> set[str]:
    table = CHOICES.search((ROOT / "docs" / "deploy.md").read_text())
    assert table, "docs/deploy.md has no deployment-choices table"
    rows = [line for line in table.group(1).splitlines() if line.startswith("| `")]
    return {row.split("`")[1] for row in rows}


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if not n.startswith(("PATH", "HOME", "PYTHON"))]:
            del os.environ[name]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings(**values: str) -> Any:
    from chalicelib.config import Settings

    with environment(**values):
        return Settings.from_environment()


def test_chalice_config_sets_only_the_listed_deployment_choices() -> None:
    unlisted = set(set_in_chalice_config()) - deployment_choices()
    assert not unlisted, (f".chalice/config.json sets {sorted(unlisted)}: a default belongs in chalicelib/config.py; "
                          "a deliberate deployment choice is listed in docs/deploy.md")


@pytest.mark.parametrize("name", sorted(set_in_chalice_config()) or ["(none)"])
def test_a_deployment_choice_is_read_and_differs_from_the_default(name: str) -> None:
    if name == "(none)":
        assert set_in_chalice_config() == {}
        return
    value = set_in_chalice_config()[name]
    assert settings(**{name: value}) != settings(), (
        f"{name}={value} in .chalice/config.json is config.py's default, or a variable config.py does not read")


def test_the_listed_choices_are_the_ones_set() -> None:
    assert deployment_choices() <= set(set_in_chalice_config()), "docs/deploy.md lists a choice nothing sets"


def test_the_template_names_resources_and_parameters_never_a_literal_setting() -> None:
    """A literal in the template's Globals would be a second default, beside config.py's."""
    variables = load_merge_template()["Globals"]["Function"]["Environment"]["Variables"]
    literals = {name: value for name, value in variables.items() if not isinstance(value, dict)}
    assert literals == {}


def test_the_secret_looking_names_of_a_deployment_are_the_documented_fourteen() -> None:
    """What the template and .chalice/config.json give a function is what config.py defaults to:
    GITHUB_TOKEN, DB_PASS and SESSION_ID are hidden in job details and webhook bodies."""
    from chalicelib.config import DEFAULT_SECRET_ENV_PATTERNS
    from chalicelib.domain.redaction import redact_envs

    deployed = settings(**set_in_chalice_config())
    assert deployed.secret_env_patterns == DEFAULT_SECRET_ENV_PATTERNS and len(DEFAULT_SECRET_ENV_PATTERNS) == 14
    shown = redact_envs({"GITHUB_TOKEN": "t", "DB_PASS": "p", "SESSION_ID": "s", "REGION": "eu"},
                       deployed.secret_env_patterns)
    assert shown["REGION"] == "eu" and {shown[k] for k in ("GITHUB_TOKEN", "DB_PASS", "SESSION_ID")} != {"t", "p", "s"}


def test_config_py_reads_each_default_it_declares() -> None:
    """Settings.from_environment with nothing set gives the dataclass's own defaults: the two
    places config.py could state a default never disagree."""
    import dataclasses

    from chalicelib.config import Settings

    empty = settings()
    prefix_derived = {"tasks_table", "jobs_table", "executions_table", "deliveries_table", "idempotency_table",
                      "connections_table", "log_group", "ecs_cluster", "schedule_group", "logs_function_name"}
    for field in dataclasses.fields(Settings):
        if field.name in prefix_derived or field.name == "region":
            continue
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        if default is None and field.default is dataclasses.MISSING:
            continue
        assert getattr(empty, field.name) == default, field.name
