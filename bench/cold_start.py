"""Figure 1: what a Lambda cold start pays for the app: importing it, and the size of its package."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .processes import ROOT

# Provided by the Lambda Python runtime, so not in the package (docs: Lambda runtimes include the
# AWS SDK); everything else pip brings in is shipped.
RUNTIME_PROVIDED = ("boto3", "botocore")


def _clean_env() -> dict[str, str]:
    # Only what a Lambda container has of ours when the module is imported: no local endpoints.
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}


def _run_ms(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def import_times(runs: int) -> dict[str, Any]:
    """Median wall time of `python -c CODE` for the app's import and for a bare interpreter,
    interleaved so load on the machine hits both alike. Bytecode is warm (one run first), as it
    would be in a package built with compiled files."""
    codes = {
        "bare": "pass",
        "app": "import app",
        # What the first request adds: the wiring imports boto3 and PynamoDB on first use.
        "appFirstUse": "import app, boto3, chalicelib.adapters.dynamo.jobs, chalicelib.services.engine",
    }
    for code in codes.values():
        _run_ms(code)
    samples: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(runs):
        for name, code in codes.items():
            samples[name].append(_run_ms(code))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {"runs": runs, "samplesMs": samples, "medianMs": medians,
            "appOverBareMs": medians["app"] - medians["bare"],
            "appFirstUseOverBareMs": medians["appFirstUse"] - medians["bare"]}


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def packaged_import_ms(build: Path, runs: int) -> list[float]:
    """`import app` from the package directory first on sys.path, with no bytecode and none written
    (-B), as on Lambda, whose /var/task is read-only: every module of the package is compiled at
    each cold start. The Chalice runtime module and boto3 come from the virtualenv."""
    env = {**_clean_env(), "PYTHONPATH": str(build)}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-B", "-c", "import app"], cwd=build, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return times


def package_size(import_runs: int = 0) -> dict[str, Any]:
    """pip install --target of requirements.txt, plus app.py and chalicelib/, unzipped; without
    compiled bytecode (the deployment packages sources) and without boto3/botocore. With
    import_runs, also times `import app` from it (minus a bare interpreter, medians)."""
    build = Path(tempfile.mkdtemp(prefix="fastlane-package-"))
    try:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-compile", "--target", str(build), "-r", str(ROOT / "requirements.txt")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        shutil.copy2(ROOT / "app.py", build / "app.py")
        shutil.copytree(ROOT / "chalicelib", build / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
        sizes = {entry.name: _size(entry) for entry in build.iterdir()}
        excluded = {name: size for name, size in sizes.items()
                    if name.split("-")[0].split(".")[0] in RUNTIME_PROVIDED}
        shipped = {name: size for name, size in sizes.items() if name not in excluded}
        top = sorted(shipped.items(), key=lambda item: -item[1])[:6]
        result: dict[str, Any] = {
            "shippedMB": sum(shipped.values()) / 1e6, "excludedMB": sum(excluded.values()) / 1e6,
            "excluded": sorted(excluded), "largest": {name: round(size / 1e6, 2) for name, size in top},
            "buildSeconds": time.monotonic() - started, "importRuns": import_runs,
            "uiKB": _size(build / "chalicelib" / "ui") / 1e3,
            "packagedImportOverBareMs": None}
        if import_runs:
            packaged = packaged_import_ms(build, import_runs)
            bare = [_run_ms("pass") for _ in range(import_runs)]
            result["packagedImportMs"] = packaged
            result["packagedImportOverBareMs"] = statistics.median(packaged) - statistics.median(bare)
        return result
    finally:
        shutil.rmtree(build, ignore_errors=True)
