"""Plain-text tables (no dependency): right-aligned numbers, left-aligned text."""
from __future__ import annotations

import csv
import io
from typing import Any, Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) or r[i] is None for r in rows) and bool(rows) for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)]
        return "| " + " | ".join(parts) + " |"

    sep = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [sep, line(cells[0]), sep.replace("-", "=")]
    out += [line(r) for r in cells[1:]]
    out.append(sep)
    return "\n".join(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def save_text(text: str, path: str | None) -> str:
    """Write ``text`` to ``path`` when one is given; return the text either way."""
    if path:
        with open(path, "w") as f:
            f.write(text)
    return text


def to_csv_text(dicts: Sequence[dict[str, Any]]) -> str:
    if not dicts:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dicts[0].keys()), lineterminator="\n")
    w.writeheader()
    w.writerows(dicts)
    return buf.getvalue()
