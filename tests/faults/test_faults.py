"""The fault harness in CI: 1,000 schedules (seeds 1 to 1000) in parts that `pytest -n 2` spreads
over its workers; each part fails when any schedule of it broke an invariant, and says which
(replay one with `make faults SEED=<seed>`). tests/conftest.py adds up the parts into the one
`faults: ...` line of the run's summary."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from .harness import run

CI_SCHEDULES = 1000
PARTS = 8
PER_PART = CI_SCHEDULES // PARTS


@pytest.mark.parametrize("part", range(PARTS))
def test_no_schedule_breaks_an_invariant(part: int, record_property: Callable[[str, object], None]) -> None:
    reports: list[str] = []
    first = 1 + part * PER_PART
    summary = run(range(first, first + PER_PART), emit=reports.append)
    record_property("faults", (summary.schedules, summary.faults, summary.violations))
    broken = ", ".join(f"{name} ({count}, e.g. seed {summary.example_seed[name]})"
                       for name, count in summary.by_invariant.most_common())
    assert summary.violations == 0, f"{summary.line()}: {broken}\n\n" + "\n\n".join(reports[:3])


def test_a_seed_replays_the_same_schedule(tmp_path) -> None:
    """`make faults SEED=<n>` must replay what the report shows: every draw, the engine's spread
    of throttled launches included, comes from the seed (8236 throttles RunTask)."""
    from .simulation import Simulation

    first, second = (Simulation(8236, str(tmp_path), whole_trace=True).run() for _ in range(2))
    assert first.plan.counts["throttle"] > 0
    assert first.plan.trace == second.plan.trace and first.plan.counts == second.plan.counts
