"""The pytest side of tests/iam.py: every test process checks every AWS call from its start, and a
test during which a deployed role would have refused a call fails, naming the function, the action
and the resource (the code under test may have absorbed the AccessDenied, as it would in AWS)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import iam


def pytest_configure(config: pytest.Config) -> None:
    iam.install()


@pytest.fixture(autouse=True)
def _no_call_refused() -> Iterator[None]:
    iam.take_violations()  # what a test before this one left is reported there, not here
    yield
    refused = iam.take_violations()
    if refused:
        pytest.fail("AWS calls a deployed role would refuse:\n" + "\n".join(sorted(set(refused))), pytrace=False)
