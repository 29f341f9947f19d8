"""The local runtime under the IAM check (tests/iam.py), for the system tests on the aws backend:
`python -m tests.iam_runtime ARGS` runs `python -m infra.local.runtime ARGS` with every AWS call its
handlers make checked against their functions' roles, and appends each refusal, one a line, to the
file FASTLANE_IAM_REFUSALS names, which the test that started it reads when it stops it."""
from __future__ import annotations

import os
import sys

from tests import iam


def main() -> int:
    from infra.local import runtime

    iam.install()
    report = os.environ["FASTLANE_IAM_REFUSALS"]
    original = iam._refuse

    def refuse_and_report(message: str, operation: str) -> None:
        with open(report, "a", encoding="utf-8") as out:
            out.write(message + "\n")
        original(message, operation)

    iam._refuse = refuse_and_report  # type: ignore[assignment]
    return runtime.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
