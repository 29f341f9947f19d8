"""Figures as rows of one table: summaries of samples, targets, the RQ reference and the peer, text and JSON."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """p50/p95/max of one series of samples (already in the unit of the row)."""

    n: int
    p50: float
    p95: float
    max: float
    min: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(len(values), percentile(values, 50), percentile(values, 95), max(values), min(values))

    def text(self, digits: int = 0) -> str:
        return f"p50 {self.p50:.{digits}f} / p95 {self.p95:.{digits}f} / max {self.max:.{digits}f}"


@dataclass
class Row:
    """One line of the table. `met` is True/False against the target, None when there is none
    or the figure could not be measured."""

    number: str  # the figure's number in the table's `#` column ("4a")
    figure: str
    text: str  # the value as the table shows it
    unit: str = ""
    samples: str = ""
    target: str = ""
    met: bool | None = None
    aws: str = ""  # the same figure on the aws backend (moto), where it is measured
    reference: str = ""
    ratio: str = ""
    # The peer (figure 3a: the original fastlane's way, Flask and RQ under gunicorn, bench/peer.py),
    # ours over it, and a moonshot: a further target shown apart, which `met` does not judge.
    peer: str = ""
    peer_ratio: str = ""
    moonshot: str = ""
    moonshot_met: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # A stable dotted name for comparing runs ("cost.single_run.calls"), and the figure as a number
    # (p50 of a latency summary, calls, a rate), None when it was not measured.
    key: str = ""
    value: float | None = None
    printed: bool = True  # False: in the JSON only (the second number of a row that shows two)

    @property
    def moonshot_text(self) -> str:
        if not self.moonshot:
            return ""
        return self.moonshot + ("" if self.moonshot_met is None else ": ok" if self.moonshot_met else ": MISS")

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "n/a" if self.text.startswith("n/a") else ""
        return "ok" if self.met else "MISS"


def not_measured(number: str, figure: str, why: str, target: str = "", key: str = "") -> Row:
    return Row(number, figure, f"n/a: {why}", target=target, data={"measured": False, "reason": why}, key=key)


def failed(number: str, figure: str, error: BaseException, target: str = "", key: str = "") -> Row:
    """A figure whose measurement broke: printed as such (and a miss), never left out."""
    why = f"error: {type(error).__name__}: {error}"[:160]
    return Row(number, figure, why, target=target, met=False if target else None, data={"error": why}, key=key)


def unique_keys(rows: Sequence[Row]) -> None:
    """Every row gets a key, unique within the run: a row without one is named after its figure
    number, and a repeated key gets a numbered suffix (so one never hides another in the JSON)."""
    seen: dict[str, int] = {}
    for row in rows:
        base = row.key or f"figure.{row.number}"
        count = seen.get(base, 0)
        seen[base] = count + 1
        row.key = base if count == 0 else f"{base}.{count + 1}"


def ratio(ours: float, reference: float, digits: int = 2) -> str:
    if not reference or math.isnan(ours) or math.isnan(reference):
        return ""
    return f"{ours / reference:.{digits}f}x"


COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("#", lambda r: r.number),
    ("figure", lambda r: r.figure),
    ("value", lambda r: r.text),
    ("unit", lambda r: r.unit),
    ("n", lambda r: r.samples),
    ("target", lambda r: r.target),
    ("met", lambda r: r.verdict),
    ("aws on moto", lambda r: r.aws),
    ("RQ reference", lambda r: r.reference),
    ("ours/RQ", lambda r: r.ratio),
    ("peer (Flask+RQ)", lambda r: r.peer),
    ("ours/peer", lambda r: r.peer_ratio),
    ("moonshot", lambda r: r.moonshot_text),
)


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (readable as plain text too): misses say MISS in the `met` column."""
    cells = [[name for name, _ in COLUMNS]] + [[get(row).replace("|", "/") for _, get in COLUMNS]
                                                for row in rows if row.printed]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def render(line: list[str]) -> str:
        return "| " + " | ".join(text.ljust(width) for text, width in zip(line, widths, strict=False)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])


def write_json(rows: Sequence[Row], results_dir: Path, meta: dict[str, Any]) -> Path:
    """bench/results/<UTC timestamp>.json and latest.json, for comparing runs."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    unique_keys(rows)
    document = {**meta, "rows": [{**asdict(row), "met": row.met, "verdict": row.verdict} for row in rows]}
    text = json.dumps(document, indent=2, default=str) + "\n"
    path = results_dir / f"{stamp}.json"
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path
