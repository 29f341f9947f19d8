"""Runs schedules on one backend and reports them: each failing schedule with its seed, its
violations and the end of its trace (replay it with `make faults BACKEND=<backend> SEED=<seed>`),
then the one summary line."""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .invariants import Violation, check
from .simulation import Budget, Simulation

TRACE_SHOWN = 40  # trace lines printed for a failing schedule
VIOLATIONS_SHOWN = 8


@dataclass
class Summary:
    backend: str = "local"
    schedules: int = 0
    faults: int = 0
    violations: int = 0
    by_invariant: Counter[str] = field(default_factory=Counter)
    example_seed: dict[str, int] = field(default_factory=dict)  # the first seed that broke each invariant
    failing: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (f"faults: {self.schedules} schedules ({self.backend}), {self.faults} faults injected, "
                f"{self.violations} invariant violations")

    def add(self, other: Summary) -> None:
        self.schedules += other.schedules
        self.faults += other.faults
        self.violations += other.violations
        self.by_invariant.update(other.by_invariant)
        for name, seed in other.example_seed.items():
            self.example_seed.setdefault(name, seed)
        self.failing += other.failing


def _memory_directory() -> str | None:
    """A RAM-backed directory where the system has one (Linux's shared memory): each schedule
    writes and deletes a database file, and a disk adds nothing to what is tested."""
    shared = os.path.join(os.sep, "dev", "shm")
    return shared if os.path.isdir(shared) and os.access(shared, os.W_OK) else None


def describe(sim: Simulation, violations: list[Violation], whole_trace: bool = False) -> str:
    """What a failing schedule prints: enough to see what broke, and the command to replay it."""
    kinds = ", ".join(f"{plan}:{kind}@{sim.workload.tasks[plan]}" for plan, kind in sorted(sim.workload.kinds.items()))
    lines = [f"schedule seed={sim.seed} ({sim.backend}): {len(violations)} violation(s); "
             f"replay: make faults BACKEND={sim.backend} SEED={sim.seed}",
             f"  workload: {sim.workload.duration / 60:.0f} min, pools narrow={sim.workload.limits.narrow} "
             f"default={sim.workload.limits.wide}, plans {kinds}",
             f"  faults: {dict(sim.plan.counts)}; dead letters: {sim.report['dead_letters']}"]
    lines += [f"  VIOLATION {violation}" for violation in violations[:VIOLATIONS_SHOWN]]
    if len(violations) > VIOLATIONS_SHOWN:
        lines.append(f"  ... and {len(violations) - VIOLATIONS_SHOWN} more")
    lines += [f"  handler error {error}" for error in sim.handler_errors[:5]]
    shown = sim.plan.trace if whole_trace else sim.plan.trace[-TRACE_SHOWN:]
    lines.append(f"  trace ({'all' if whole_trace else f'last {len(shown)}'} lines; t+ virtual seconds from the start):")
    lines += [f"    {line}" for line in shown]
    return "\n".join(lines)


def run(seeds: Iterable[int], budget: Budget | None = None, emit: Callable[[str], None] = print,
        verbose: bool = False, whole_trace: bool = False, backend: str = "local") -> Summary:
    """Run one schedule per seed on `backend` (with its budget unless given); `emit` gets each
    failing schedule's report (every schedule's with `verbose`; with its whole trace, not only
    its end, with `whole_trace`)."""
    summary = Summary(backend)
    with tempfile.TemporaryDirectory(prefix="fastlane-faults-", dir=_memory_directory()) as directory:
        for seed in seeds:
            sim = Simulation(seed, directory, budget, backend=backend, whole_trace=whole_trace).run()
            violations = check(sim)
            summary.schedules += 1
            summary.faults += sim.plan.injected
            summary.violations += len(violations)
            for violation in violations:
                summary.by_invariant[violation.invariant] += 1
                summary.example_seed.setdefault(violation.invariant, seed)
            if violations:
                summary.failing.append(seed)
            if violations or verbose:
                emit(describe(sim, violations, whole_trace))
    return summary
