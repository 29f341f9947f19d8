"""The fault harness in CI: 1,000 schedules on the local backend (seeds 1 to 1000) and 60 on the aws
one (seeds 1 to 60, its own smaller budget, each handler under its function's IAM role), in parts
that `pytest -n 2` spreads over its workers; each part fails when any schedule of it broke an
invariant, and says which (replay one with `make faults BACKEND=<backend> SEED=<seed>`).
tests/conftest.py adds up the parts into the one `faults: ...` line of the run's summary."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import run

CI_SCHEDULES = {"local": 1000, "aws": 60}
PARTS = {"local": 8, "aws": 6}


@pytest.mark.parametrize(("backend", "part"), [(backend, part) for backend in PARTS for part in range(PARTS[backend])])
def test_no_schedule_breaks_an_invariant(backend: str, part: int, record_property: Callable[[str, object], None]) -> None:
    reports: list[str] = []
    per_part = CI_SCHEDULES[backend] // PARTS[backend]
    first = 1 + part * per_part
    summary = run(range(first, first + per_part), emit=reports.append, backend=backend)
    record_property("faults", (backend, summary.schedules, summary.faults, summary.violations))
    broken = ", ".join(f"{name} ({count}, e.g. seed {summary.example_seed[name]})"
                       for name, count in summary.by_invariant.most_common())
    assert summary.violations == 0, f"{summary.line()}: {broken}\n\n" + "\n\n".join(reports[:3])


def test_a_seed_replays_the_same_schedule(tmp_path: Path) -> None:
    """`make faults SEED=<n>` must replay what the report shows: every draw, the engine's spread
    of throttled launches included, comes from the seed (8239 throttles RunTask)."""
    from .simulation import Simulation

    first, second = (Simulation(8239, str(tmp_path), whole_trace=True).run() for _ in range(2))
    assert first.plan.counts["throttle"] > 0
    assert first.plan.trace == second.plan.trace and first.plan.counts == second.plan.counts


def test_an_aws_seed_replays_the_same_schedule(tmp_path: Path) -> None:
    """On moto too (its message ids and receipt handles are its own draws): 14 throttles RunTask."""
    from .simulation import Simulation

    first, second = (Simulation(14, str(tmp_path), backend="aws", whole_trace=True).run() for _ in range(2))
    assert first.plan.counts["throttle"] > 0
    assert first.plan.trace == second.plan.trace and first.plan.counts == second.plan.counts
