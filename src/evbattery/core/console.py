"""Console helpers for CLI entry points: clear errors, tables, JSON output."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

err_console = Console(stderr=True)
out_console = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line to stderr and exit non-zero (no traceback). The message is plain text:
    a file name like `cell[1].jpg` or a path with `[/...]` is shown as it is, not read as rich markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def info(message: str) -> None:
    """A progress/info line on stderr (stdout stays clean for JSON/CSV)."""
    err_console.print(message, highlight=False, soft_wrap=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], to_stderr: bool = False) -> None:
    """Print a rich table."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r])
    (err_console if to_stderr else out_console).print(t)


def print_json(obj: Any) -> None:
    """Machine-readable JSON on stdout."""
    typer.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))
