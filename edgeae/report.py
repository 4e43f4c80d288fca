"""A small static HTML report: titled sections of text, image figures and tables.

Images are written as PNG files in an ``img/`` folder beside ``index.html`` (full resolution, viewable on
their own) and shown scaled to the page width; the HTML itself stays a few kilobytes. A report is a list of
:class:`Section` objects, so a caller (the demo, later the export and downlink stages) adds content by
appending sections.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.printable import printable
from edgeae.report_files import stage_images as stage_images

ERROR_MAP_MAX = 0.25  # |error| (fraction of full scale) shown at the top of the colour scale

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1em}
.cols2{grid-template-columns:repeat(2,minmax(0,1fr))}.cols4{grid-template-columns:repeat(4,minmax(0,1fr))}
.cols8{grid-template-columns:repeat(8,minmax(0,1fr))}.cols8 figcaption{font-size:.75em}
.cbar{max-width:520px;margin:.6em 0}.cbar img{width:100%;height:18px;border:1px solid #999;display:block}
.cbar .ticks{display:flex;justify-content:space-between;font-size:.8em;color:#444}
.conclusion{background:#f3f6fb;border-left:4px solid #4c78a8;padding:.4em 1em}
figure{margin:0}figure img{width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child,td.l,th.l{text-align:left}
.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
"""


@dataclass(frozen=True)
class Figure:
    """One image in a section: a caption and an array (H, W), (H, W, 1) or (H, W, 3), float [0, 1] or uint8."""

    caption: str
    image: np.ndarray
    name: str = ""  # file name stem under img/ (default: from the caption)


@dataclass
class Section:
    """A titled block: paragraphs (plain text), ``html_before`` (trusted HTML), figures, tables, ``html_extra``.

    ``columns`` fixes the figure grid (2: pairs side by side, e.g. a reconstruction and its error map;
    0: as many as fit). ``images`` are extra PNGs (name -> array) written to ``img/`` for ``html_before`` /
    ``html_extra`` to reference as ``img/NAME``.
    """

    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[list[dict[str, Any]]] = field(default_factory=list)
    html_extra: str = ""  # trusted HTML appended as is (for sections that need more than the above)
    html_before: str = ""  # trusted HTML between the paragraphs and the figures
    columns: int = 0
    images: dict[str, np.ndarray] = field(default_factory=dict)


def colourise(values: np.ndarray, vmin: float, vmax: float, cmap: str = "magma") -> np.ndarray:
    """An (H, W) array as an RGB uint8 image through an OpenCV colour map (``magma`` or ``inferno``);
    NaN becomes mid-grey."""
    cv2 = require("cv2")
    v = np.asarray(values, dtype=np.float64)
    nan = ~np.isfinite(v)
    scaled = np.clip((np.where(nan, vmin, v) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    grey = np.round(scaled * 255).astype(np.uint8)
    code = {"magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO}[cmap]
    rgb = np.ascontiguousarray(cv2.applyColorMap(grey, code)[..., ::-1])
    rgb[nan] = 128
    return rgb


def error_map(original: np.ndarray, recon: np.ndarray, vmax: float = ERROR_MAP_MAX) -> np.ndarray:
    """Mean |recon - original| over channels as an RGB uint8 colour map (magma: 0 black, through purple and
    orange, to pale yellow at ``vmax`` and above)."""
    a = np.asarray(original, dtype=np.float32)
    b = np.asarray(recon, dtype=np.float32)
    err = np.abs(b - a)
    if err.ndim == 3:
        err = err.mean(axis=2)
    return colourise(err, 0.0, vmax, "magma")


def colour_bar(
    name: str, vmin: float, vmax: float, label: str, cmap: str = "magma", ticks: int = 5
) -> tuple[str, np.ndarray]:
    """(trusted HTML, PNG array) of a horizontal colour bar; the HTML references ``img/NAME.png``.

    Put the array in :attr:`Section.images` under ``NAME`` so the file is written beside the report.
    """
    bar = colourise(np.tile(np.linspace(vmin, vmax, 256), (12, 1)), vmin, vmax, cmap)
    values = np.linspace(vmin, vmax, ticks)
    labels = "".join(f"<span>{_fmt_tick(v)}{'+' if i == ticks - 1 else ''}</span>" for i, v in enumerate(values))
    text = (
        f"<div class='cbar'><img src='img/{html.escape(name)}.png' alt='colour bar: {html.escape(label)}'>"
        f"<div class='ticks'>{labels}</div><div class='note'>{html.escape(label)}</div></div>"
    )
    return text, bar


def _fmt_tick(v: float) -> str:
    return f"{v:.3g}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "figure"


def _number_format(values: Sequence[Any]) -> str:
    """One format for a column's floats: four decimals; more (up to six) when its smallest non-zero value needs them
    for two significant digits; scientific for every value when one is below 1e-5 or at or above 1e5."""
    sizes = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v) and v != 0]
    if not sizes:
        return ".4f"
    lo, hi = min(sizes), max(sizes)
    if lo < 1e-5 or hi >= 1e5:
        return ".3e"
    return f".{max(4, 1 - math.floor(math.log10(lo)))}f"


def _fmt(v: Any, number: str = ".4f") -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "∞" if v > 0 else "–"
        return format(v, number)
    return html.escape(str(v))


def table_html(rows: Sequence[dict[str, Any]]) -> str:
    """An HTML table from row dicts (columns = keys of the first row, in order); a column's floats share one
    format (:func:`_number_format`), +inf shows as ∞ (an exact rebuild), NaN and -inf as –."""
    if not rows:
        return ""
    cols = list(rows[0])
    formats = {c: _number_format([r.get(c) for r in rows]) for c in cols}

    def is_text(v: Any) -> bool:
        return isinstance(v, str) and not re.fullmatch(r"[-+]?[\d.,]+%?", v)

    def text_column(c: str) -> bool:  # placeholders ("–" for a lost frame, "") say nothing of the column
        values = [r.get(c) for r in rows if r.get(c) not in (None, "", "–", "-")]
        return bool(values) and all(is_text(v) for v in values)

    # a text column's header is left-aligned like its cells
    head = "".join(
        f"<th class='l'>{html.escape(str(c))}</th>" if text_column(c) else f"<th>{html.escape(str(c))}</th>"
        for c in cols
    )

    def cell(v: Any, c: str) -> str:
        return f"<td class='l'>{_fmt(v)}</td>" if is_text(v) else f"<td>{_fmt(v, formats[c])}</td>"

    body = "".join("<tr>" + "".join(cell(r.get(c, ""), c) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out_dir: str | os.PathLike[str], title: str, sections: Sequence[Section], intro: str = "") -> Path:
    """Write ``out_dir/index.html`` and its ``img/*.png``; return the HTML path. The page and its images replace the
    earlier ones all or nothing (:mod:`edgeae.report_files`): the images are written to a staging folder
    (:func:`stage_images`) and the page to a temporary file, both fsynced before the first rename, and a rename that
    fails puts the earlier files back, so a failed write (a full disk, Ctrl-C) leaves the earlier page and its images
    as they were. A failed first write removes the folders it made."""
    from edgeae.report_files import replace_together, staging

    with staging(out_dir) as staged:
        page = render_report(out_dir, title, sections, intro, img_dir=staged)
        replace_together(out_dir, staged, {"index.html": page})
    return Path(out_dir) / "index.html"


def render_report(
    out_dir: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    intro: str = "",
    *,
    img_dir: str | os.PathLike[str] | None = None,
    lead: str = "",
) -> str:
    """Write the images to ``img_dir`` (default ``out_dir/img``; a staging folder, :func:`stage_images`) and return
    the page that shows them as ``img/NAME`` (for ``out_dir/index.html``): its text is UTF-8 clean, a name's bytes
    that are not UTF-8 shown as ``\\xff`` (:func:`printable`). ``lead``: trusted HTML shown under the intro, before
    the sections (the demo's verdict)."""
    from edgeae.imageio import write_image

    out = Path(out_dir)
    img_dir = out / "img" if img_dir is None else Path(img_dir)
    img_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    parts.append(lead)  # trusted HTML under the intro: a page's answer before its evidence (the demo's verdict)
    used: set[str] = set()
    for si, sec in enumerate(sections):
        parts.append(f"<section id='{_slug(sec.title)}'><h2>{html.escape(sec.title)}</h2>")
        parts.extend(f"<p>{html.escape(p)}</p>" for p in sec.paragraphs)
        for name, image in sec.images.items():
            write_image(img_dir / f"{name}.png", image)
        parts.append(sec.html_before)
        if sec.figures:
            parts.append(f"<div class='grid cols{sec.columns}'>" if sec.columns else "<div class='grid'>")
            for fig in sec.figures:
                name = f"{si:02d}-{_slug(fig.name or fig.caption)}.png"
                while name in used:
                    name = name.replace(".png", "-x.png")
                used.add(name)
                write_image(img_dir / name, fig.image)
                cap = html.escape(fig.caption)
                parts.append(
                    f"<figure><a href='img/{name}'><img src='img/{name}' alt='{cap}'></a>"
                    f"<figcaption>{cap}</figcaption></figure>"
                )
            parts.append("</div>")
        parts.extend(table_html(t) for t in sec.tables)
        parts.append(sec.html_extra)
        parts.append("</section>")
    parts.append("</body></html>\n")
    return printable("\n".join(parts))
