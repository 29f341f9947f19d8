"""The deployable template, packaged once per session the way `make package` builds it, from a
copy of the project whose requirements.txt is empty: the template does not depend on the
requirements, and packaging then needs no network (no pip download)."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODES = ("iam", "api_key", "none")


def load_merge_template() -> dict[str, Any]:
    """infra/fastlane.yaml as Chalice reads it (short-form intrinsics become Fn:: dicts)."""
    from chalice.package import YAMLTemplateSerializer

    path = ROOT / "infra" / "fastlane.yaml"
    return YAMLTemplateSerializer().load_template(path.read_text(), str(path))


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "app.py", copy / "app.py")
    shutil.copytree(ROOT / "chalicelib", copy / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".chalice", copy / ".chalice", ignore=shutil.ignore_patterns("deployments", "venv"))
    (copy / "requirements.txt").write_text("")
    return copy


@pytest.fixture(scope="session")
def packaged_paths(project_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    from infra.package import package

    chalice = str(Path(sys.executable).with_name("chalice"))
    out = tmp_path_factory.mktemp("build")
    yield {mode: package(out / mode, stage="dev", api_auth=mode, project_dir=project_copy, chalice=chalice)
           for mode in MODES}


@pytest.fixture(scope="session")
def templates(packaged_paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {mode: yaml.safe_load(path.read_text()) for mode, path in packaged_paths.items()}


@pytest.fixture(scope="session")
def template(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The template `make package` builds by default (IAM authorization)."""
    return templates["iam"]


@pytest.fixture(scope="session")
def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items()
            if resource.get("Type") == "AWS::Serverless::Function"}
