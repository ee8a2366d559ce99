"""One Markdown table builder for every report and generated doc."""

from __future__ import annotations


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _line(cells) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def markdown_table(headers, rows, *, align=None) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
      headers: column titles.
      rows: iterables of cells (``None`` -> an em dash, floats to 4 significant digits, ``|`` escaped;
        an empty string stays an empty cell, written ``| |``, e.g. under a total row's label).
      align: optional per-column ``"l"``, ``"r"`` or ``"c"`` (default: left).

    Returns:
      The table as text (no trailing newline).

    Example:
      >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
      | a | b |
      |---|---|
      | 1 | 0.5 |
    """
    headers = [_cell(h) for h in headers]
    marks = {"l": "---", "r": "--:", "c": ":-:"}
    align = align or ["l"] * len(headers)
    if len(align) != len(headers):
        raise ValueError(f"`align` must give one entry per column ({len(headers)}). "
                         f"Received: align={align!r}")
    lines = [_line(headers), "|" + "|".join(marks[a] for a in align) + "|"]
    for row in rows:
        cells = [_cell(v) for v in row]
        if len(cells) != len(headers):
            raise ValueError(f"every row must have {len(headers)} cells. Received: a row with {len(cells)}")
        lines.append(_line(cells))
    return "\n".join(lines)
