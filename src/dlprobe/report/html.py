"""Self-contained HTML reports: figures embedded as PNG, readable offline, printable."""

from __future__ import annotations

import base64
import html
import io

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #345;padding-bottom:.2em}
h2{margin-top:2em;border-bottom:1px solid #ccd;padding-bottom:.15em;page-break-before:auto}
h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0 1em 0;font-size:.92em}
td,th{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f2f6}
figure{margin:1em 0;page-break-inside:avoid}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}
.obs li{margin:.25em 0}
.note{background:#fff8e0;border-left:4px solid #e6b800;padding:.5em .8em;margin:1em 0}
.fail{background:#fde8e8;border-left:4px solid #c0392b;padding:.5em .8em;margin:1em 0}
.muted{color:#666;font-size:.9em}
nav.toc{background:#f6f7f9;padding:.6em 1.2em;border-radius:4px}
section{page-break-before:auto}
@media print{body{max-width:none}nav.toc{page-break-after:always}
section.experiment{page-break-before:always}}
"""


def esc(text) -> str:
    return html.escape(str(text))


def figure_png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def table(rows: list[dict] | list[tuple], header: list[str] | None = None) -> str:
    """A table from records (keys as header) or from (name, value) pairs."""
    if not rows:
        return ""
    if isinstance(rows[0], dict):
        header = header or list(rows[0])
        body = [[r.get(h, "") for h in header] for r in rows]
    else:
        body = [list(r) for r in rows]
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    trs = "".join("<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in r) + "</tr>" for r in body)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{trs}</table>"


def fmt(v) -> str:
    """Numbers to 4 significant digits; everything else as text."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(fmt(x) for x in v)
    return str(v)


def page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>{body}</body></html>"
    )
