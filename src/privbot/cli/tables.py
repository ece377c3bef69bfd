"""Plain text tables for the terminal: what the CLI prints without --json."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[dict[str, Any]], columns: list[str], width: int = 48) -> str:
    """A plain text table; long cells are cut to keep a line per row."""

    def cell(value: Any) -> str:
        text = "" if value is None else str(value).replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    table = [[c for c in columns]] + [[cell(r.get(c)) for c in columns] for r in rows]
    sizes = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(sizes[i]) for i, v in enumerate(row)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * s for s in sizes))
    return "\n".join(lines) if rows else "\n".join([*lines[:2], "(none)"])
