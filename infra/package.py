"""Builds the deployable template: `chalice package` merged with infra/fastlane.yaml (`make package`).

    python -m infra.package [--stage dev] [--api-auth iam|api_key|none] [--lint] build

writes build/sam.yaml and build/deployment.zip. No AWS credentials are needed; the region only
has to be set (AWS_DEFAULT_REGION, us-east-1 when unset: nothing regional ends up in the
template). Two things are arranged around Chalice:
- the SQS event sources name the template's queues: Chalice builds each queue's ARN from the
  queue name in app.py (JOBS_QUEUE_NAME ...), so the name given while packaging is a reference to
  the queue resource, `${JobsQueue.QueueName}`; the event source mappings then depend on the queues
  they read (CloudFormation creates the queues first) and always match them;
- the YAML Chalice writes shares objects between routes as YAML aliases, which CloudFormation
  does not accept: the template is written again without them.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MERGE_TEMPLATE = ROOT / "infra" / "fastlane.yaml"
API_AUTH_CHOICES = ("iam", "api_key", "none")
# app.py subscribes each SQS handler to the queue these name (see the module docstring).
QUEUE_NAMES = {"JOBS_QUEUE_NAME": "${JobsQueue.QueueName}", "EVENTS_QUEUE_NAME": "${EventsQueue.QueueName}",
               "NOTIFY_QUEUE_NAME": "${NotifyQueue.QueueName}"}


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def package_environment(api_auth: str, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env.update(QUEUE_NAMES)
    env["FASTLANE_API_AUTH"] = "" if api_auth == "none" else api_auth
    return env


def flatten(template: Path) -> None:
    """Write the template again with every YAML alias expanded."""
    data = yaml.safe_load(template.read_text())
    template.write_text(yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=120))


def package(out_dir: Path, stage: str = "dev", api_auth: str = "iam", project_dir: Path = ROOT,
            chalice: str | None = None) -> Path:
    """Run `chalice package` for `stage`; returns the path of the template."""
    if api_auth not in API_AUTH_CHOICES:
        raise ValueError(f"api_auth must be one of {API_AUTH_CHOICES}, not {api_auth!r}")
    chalice = chalice or str(Path(sys.executable).with_name("chalice"))
    subprocess.run([chalice, "--project-dir", str(project_dir), "package", "--stage", stage,
                    "--merge-template", str(MERGE_TEMPLATE), str(out_dir)],
                   check=True, env=package_environment(api_auth))
    template = out_dir / "sam.yaml"
    flatten(template)
    return template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--api-auth", default="iam", choices=API_AUTH_CHOICES)
    parser.add_argument("--lint", action="store_true", help="run cfn-lint on the result")
    args = parser.parse_args(argv)
    template = package(args.out_dir, args.stage, args.api_auth)
    if args.lint:
        return subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(template)]).returncode
    print(f"{template} (stage {args.stage}, API authorization {args.api_auth})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
