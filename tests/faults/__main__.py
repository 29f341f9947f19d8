"""`python -m tests.faults`: run schedules of the fault harness on one backend and print the failing
ones, then one line `faults: <N> schedules (<backend>), <M> faults injected, <V> invariant violations`.

    python -m tests.faults [--backend local|aws] [--schedules N] [--first-seed S] [--seed SEED] [--verbose]

`--backend aws` runs the AWS adapters on moto in process, each handler under its function's IAM
role (fewer schedules by default: moto is slow); `--seed` replays one schedule (its report is
printed whether it fails or not); the exit status is 1 when an invariant was violated."""
from __future__ import annotations

import argparse
import sys
import time

from .harness import run

DEFAULT_SCHEDULES = {"local": 3000, "aws": 100}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=sorted(DEFAULT_SCHEDULES), default="local")
    parser.add_argument("--schedules", type=int, default=None,
                        help="how many schedules (seeds first-seed, first-seed+1, ...); by default 3000 local, 100 aws")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None, help="replay this one schedule, with its whole report")
    parser.add_argument("--verbose", action="store_true", help="print every schedule's report")
    args = parser.parse_args(argv)

    schedules = args.schedules if args.schedules is not None else DEFAULT_SCHEDULES[args.backend]
    seeds = [args.seed] if args.seed is not None else range(args.first_seed, args.first_seed + schedules)
    started = time.monotonic()
    replay = args.seed is not None
    summary = run(seeds, emit=lambda text: print(text, flush=True), verbose=args.verbose or replay,
                  whole_trace=replay, backend=args.backend)
    if summary.by_invariant:
        print(f"violations by invariant ({time.monotonic() - started:.1f} s):", file=sys.stderr)
        for name, count in summary.by_invariant.most_common():
            print(f"  {count:5d}  {name}  (e.g. make faults BACKEND={args.backend} SEED={summary.example_seed[name]})",
                  file=sys.stderr)
    print(summary.line(), flush=True)
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
