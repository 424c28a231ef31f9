"""HTML building blocks for the report: escaped cells, tables, sections and the page.

The page is one self-contained file: inline CSS and inline SVG, no script, no external URL.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

MISSING = "—"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       margin: 0 auto; max-width: 1240px; padding: 16px 24px 48px; color: #1d1d1f; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.note { color: #555; margin: 4px 0 10px; max-width: 900px; }
nav a { margin-right: 12px; }
.headline { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.headline div { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px;
                background: #fafafa; }
.headline b { display: block; font-size: 18px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums;
        font-size: 13px; }
.wide { overflow-x: auto; }
th, td { border: 1px solid #d8d8d8; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; white-space: normal; }
td.name, th.name, td.text { text-align: left; }
tr.ensemble td { font-weight: 600; background: #f3f8ff; }
tr.chosen td.name::after { content: " ✓"; color: #2a7; }
table.facts td.text { white-space: normal; max-width: 640px; }
.row { display: flex; flex-wrap: wrap; column-gap: 40px; align-items: flex-start; }
.row > section { flex: 1 1 420px; min-width: 0; }
figure { margin: 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12px; max-width: 520px; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def num(value: float | None, digits: int = 3) -> str:
    """A number to `digits` decimals; the dash for a missing (None/NaN) value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}f}"


def interval(pair: Iterable[float | None] | None, digits: int = 3) -> str:
    low, high = pair if pair is not None else (None, None)
    if low is None or high is None:
        return MISSING
    return f"[{num(low, digits)}, {num(high, digits)}]"


def mean_std(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return MISSING
    return f"{num(mean, digits)} ± {num(std, digits)}"


def signed(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:+.{digits}f}"


def duration(seconds: float | None) -> str:
    """`42 s`, `3.5 min`, `1.2 h`."""
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def cell(text: object, cls: str | None = None, title: str | None = None, tag: str = "td") -> str:
    """One cell; `text` is escaped."""
    attrs = (f' class="{esc(cls)}"' if cls else "") + (f' title="{esc(title)}"' if title else "")
    return f"<{tag}{attrs}>{esc(text)}</{tag}>"


def row(cells: Iterable[str], key: str | None = None, cls: str | None = None) -> str:
    """A table row of ready-made cells; `key` becomes `data-row` (what tests and readers select)."""
    attrs = (f' data-row="{esc(key)}"' if key else "") + (f' class="{esc(cls)}"' if cls else "")
    return f"<tr{attrs}>{''.join(cells)}</tr>"


def table(
    headers: Iterable[str],
    rows: Iterable[str],
    table_id: str | None = None,
    text_columns: tuple[int, ...] = (0,),
) -> str:
    """A table with one header row (`headers` escaped); `text_columns` are left-aligned."""
    heads = [
        cell(h, "name" if i in text_columns else None, tag="th") for i, h in enumerate(headers)
    ]
    attrs = f' id="{esc(table_id)}"' if table_id else ""
    body = "\n".join(rows)
    head = "".join(heads)
    return (
        f'<div class="wide"><table{attrs}>\n<thead>{head}</thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def facts(pairs: Iterable[tuple[str, object]], table_id: str | None = None) -> str:
    """A two-column table of label → value, without a header."""
    rows = "\n".join(row([cell(k, "name"), cell(v, "text")]) for k, v in pairs)
    attrs = f' id="{esc(table_id)}"' if table_id else ""
    return f'<table{attrs} class="facts">\n<tbody>\n{rows}\n</tbody>\n</table>'


def section(section_id: str, title: str, *parts: str, note: str | None = None) -> str:
    """A titled section; `parts` are HTML, `note` plain text shown under the title."""
    lead = f'<p class="note">{esc(note)}</p>' if note else ""
    body = "\n".join(parts)
    return f'<section id="{esc(section_id)}">\n<h2>{esc(title)}</h2>\n{lead}\n{body}\n</section>'


def figure(svg: str, caption: str, figure_id: str) -> str:
    return (
        f'<figure id="{esc(figure_id)}">\n{svg}\n<figcaption>{esc(caption)}</figcaption>\n</figure>'
    )


def paragraph(text: str, cls: str = "note") -> str:
    return f'<p class="{esc(cls)}">{esc(text)}</p>'


Part = tuple[str, str, str | None]
"""A section as (id, name in the table of contents, html); html None leaves it out."""


def page(title: str, headline: list[tuple[str, str]], rows: list[list[Part]]) -> str:
    """The whole document: title, headline figures (label, value), a table of contents, then the
    sections, row by row (the sections of one row side by side where the page is wide enough)."""
    rows = [[part for part in parts if part[2] is not None] for parts in rows]
    tiles = "".join(f"<div>{esc(label)}<b>{esc(value)}</b></div>" for label, value in headline)
    nav = " ".join(
        f'<a href="#{esc(sid)}">{esc(name)}</a>' for parts in rows for sid, name, _ in parts
    )
    body = "\n".join(_row([content for _, _, content in parts]) for parts in rows if parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n"
        f'<div class="headline">{tiles}</div>\n<nav>{nav}</nav>\n{body}\n'
        "</body>\n</html>\n"
    )


def _row(contents: list[str]) -> str:
    if len(contents) == 1:
        return contents[0]
    return '<div class="row">\n' + "\n".join(contents) + "\n</div>"
