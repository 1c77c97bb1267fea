"""Markdown tables and number formatting for reports."""
from __future__ import annotations

import math


def fmt(value, digits: int = 2) -> str:
    """A number as a report shows it: ints with thousands separators, floats to ``digits``, None/nan as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.1e}"


def cell(text) -> str:
    """``text`` made safe for one markdown table cell: ``|`` escaped, newlines as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list], digits: int = 2) -> str:
    """A GitHub markdown table; cells formatted by ``fmt``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
