"""Output for people (tables; colour only on a terminal, never with NO_COLOR) and for scripts
(--json: the service's own JSON, indented)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

WHOLE = {"CREATED", "STARTED", "LAST MODIFIED", "NEXT RUN", "STATUS", "EXIT", "DURATION", "RUNS", "JOBS"}
STATUS_STYLES = {"done": "green", "failed": "red", "timedout": "red", "expired": "yellow", "stopped": "yellow",
                 "running": "cyan", "pulling": "cyan", "enqueued": "blue"}


def console() -> Console:
    """stdout: the terminal's width on a terminal; elsewhere (a pipe, a file) lines are not wrapped."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=False, width=4096)
    return out


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def when(at: Any) -> str:
    """An epoch time as local time, or '-'."""
    if not isinstance(at, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def duration(start: Any, end: Any) -> str:
    if not isinstance(start, (int, float)):
        return "-"
    seconds = (end if isinstance(end, (int, float)) else time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def status_text(status: Any) -> Text:
    text = str(status) if status else "-"
    return Text(text, style=STATUS_STYLES.get(text, ""))


def table(columns: Sequence[str], rows: Iterable[Sequence[str | Text]], title: str | None = None) -> None:
    """A table; text is shown as it is (never read as markup)."""
    out = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in columns:
        # Ids and times stay whole on one line; free text folds.
        whole = column in WHOLE or column.endswith(("ID", "JOB", "EXECUTION", "TASK"))
        out.add_column(column, no_wrap=whole, overflow="ellipsis" if whole else "fold", min_width=None)
    for row in rows:
        out.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
    show(out)


def show(renderable: Any) -> None:
    """Prints to stdout; off a terminal without the padding at the ends of lines."""
    target = console()
    if target.is_terminal:
        target.print(renderable)
        return
    with target.capture() as captured:
        target.print(renderable)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def pairs(items: Iterable[tuple[str, Any]]) -> None:
    """Key: value lines, in a column."""
    shown = [(k, v) for k, v in items if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0)
    out = console()
    for key, value in shown:
        text = value if isinstance(value, str) else json.dumps(value)
        out.print(Text.assemble((f"{key + ':':<{width + 1}}", "bold"), " ", text), highlight=False)


def page_footer(data: dict[str, Any], what: str) -> None:
    pages = data.get("pages") or 1
    if pages > 1:
        page = data.get("page") or 1
        more = f"; --page {page + 1} for the next" if data.get("hasNext") else ""
        click.echo(f"page {page} of {pages} ({data.get('total')} {what}){more}", err=True)
