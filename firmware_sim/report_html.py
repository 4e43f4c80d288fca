"""The building blocks of ``report.html``: its stylesheet, escaping and number formats, tables, legends, the
frame of an inline SVG chart, and the PNG images of the anomaly gallery (written with zlib); and
:func:`printable` (from the neutral :mod:`edgeae.printable`), which the page and the console write names with.

numpy and the standard library only, like the rest of the flight runtime.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.printable import printable

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.verdict{font-size:1.1em;padding:.6em .9em;border-radius:4px;background:#eef7ee;border:1px solid #9c9}
.scroll{overflow-x:auto}.verdict.bad{background:#fbeeee;border-color:#d99}.verdict.warn{background:#fdf6e3;border-color:#d9b55a}.note{color:#555;font-size:.9em}
.gallery{display:flex;flex-wrap:wrap;gap:.8em}.gallery figure{margin:0;width:132px}
.gallery img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #999}
figcaption{font-size:.8em;color:#444}.legend span{display:inline-block;margin-right:1em;font-size:.85em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def png_bytes(pixels: np.ndarray, bit_depth: int = 8) -> bytes:
    """An 8-bit grey or RGB PNG of ``pixels`` (H, W[, C]); wider samples are scaled down from ``bit_depth``."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * 255.0 / max(1, 2**bit_depth - 1)), 0, 255).astype(np.uint8)
    h, w, c = a.shape
    if c not in (1, 3):
        a, c = a[..., :1], 1
    colour = 0 if c == 1 else 2
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _e(v: Any) -> str:
    return html.escape(printable(str(v)))


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return _e(v)


def _policy(h: Any) -> str:
    """The heap policy dict of the summary as one line ("compact: M_ARENA_MAX 1, ...")."""
    if not isinstance(h, dict):
        return str(h)
    rest = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in h.items() if k != "policy")
    return f"{h.get('policy', '?')}" + (f": {rest}" if rest else "")


def _mib(b: Any) -> str:
    return "–" if not isinstance(b, int | float) else f"{b / 2**20:.1f} MiB"


_NUMBER = re.compile(r"[<>~+\-]?\d")  # a cell that starts with a number (1,024; 0.4%; <0.1%; 3 / 12; 5.2 MiB)


def _numeric(cell: str) -> bool:
    """Whether a table cell (HTML) holds a number, or nothing ("–"): what a column is right-aligned for."""
    text = html.unescape(re.sub("<[^>]+>", "", cell)).strip()
    return text in ("", "–", "-") or _NUMBER.match(text) is not None


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A table; its first ``left`` columns left-aligned, the others right-aligned when every cell of theirs is a
    number (or "–"), else left-aligned: text (a reason, flags, a policy) reads from the left (until session 36 a
    table's text columns after the first ``left`` were right-aligned, the evicted items' reasons among them)."""
    width = max([len(head), *map(len, rows)])
    lefts = [i < left or not all(_numeric(r[i]) for r in rows if i < len(r)) for i in range(width)]
    th = "".join(f"<th class='l'>{_e(h)}</th>" if lefts[i] else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td class='l'>{c}</td>" if lefts[i] else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<div class='scroll'><table><tr>{th}</tr>{body}</table></div>"  # a narrow window scrolls the table


def _legend(items: dict[str, str]) -> str:
    return (
        "<div class='legend'>"
        + "".join(f"<span><i style='background:{c}'></i>{_e(k)}</span>" for k, c in items.items())
        + "</div>"
    )


def _short_source(src: Any, width: int = 36) -> str:
    """The file name of a frame source, cut in the middle to ``width`` characters (full path on hover)."""
    if not src:
        return "–"
    name = Path(str(src)).name
    if len(name) > width:
        name = name[: width // 2 - 1] + "…" + name[-(width // 2) :]
    return f"<span title='{_e(src)}'>{_e(name)}</span>"


def _svg_open(width: int, height: int) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' "
        f"style='max-width:{width}px' font-size='11' font-family='sans-serif'>"  # scales down in a narrow window
    )


def _percent(part: float, whole: float) -> str:
    """``part`` of ``whole`` as a percentage that never reads 0% for something: 0.4%, <0.1%, 37%."""
    p = 100 * part / whole
    if p == 0 or p >= 10:
        return f"{p:.0f}%"
    return "<0.1%" if p < 0.1 else f"{p:.1f}%"


def _bytes(v: int) -> str:
    return f"{v:,} B" if abs(v) < 2**20 else f"{_mib(v)} ({v:,} B)"


def _short_bytes(v: int) -> str:
    return f"{v:,} B" if abs(v) < 2**20 else _mib(v)


def _detail(key: str, v: Any, in_bytes: bool = False) -> str:
    """One field of a telemetry event as text: ``held 24.5 MiB (25,677,824 B)``, a nested record's fields in
    parentheses, numbers with thousands separators. Fields that count bytes (``held``, ``budget``, ``*bytes``,
    ``rss*``, those of a memory ``*plan``) are shown as bytes, a list of them as ``9.2 MiB, 5.2 MiB, 0 B`` (until
    session 36 ``recon_warmed``'s ``rss added 9609216, 5496832, 0``)."""
    name = key.replace("_", " ")
    in_bytes = in_bytes or key in ("held", "budget", "bytes") or key.endswith("bytes") or key.startswith("rss")
    if key == "detail" and isinstance(v, str):  # the event's own sentence
        return v
    if key == "path":
        return f"{name} {Path(str(v)).name}"
    if isinstance(v, dict):
        inner = ", ".join(_detail(str(k), x, in_bytes or key.endswith("plan")) for k, x in v.items())
        return f"{name} ({inner})"
    if isinstance(v, bool) or v is None:
        return f"{name} {_num(v)}"
    if isinstance(v, int):
        return f"{name} {_bytes(v) if in_bytes else f'{v:,}'}"
    if isinstance(v, float):
        return f"{name} {v:.4g}"
    if isinstance(v, list | tuple):
        byte = in_bytes and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        return f"{name} {', '.join(_short_bytes(x) if byte else str(x) for x in v) or '–'}"
    return f"{name} {v}"


def select(items: list[Any], last: int, flagged: Any = None, extra: int = 0) -> tuple[list[Any], int]:
    """What a chart or table of a long run shows, in the items' order: all of them when there are at most
    ``last + extra``; else the last ``last`` and the latest ``extra`` of the earlier ones for which ``flagged(item)``
    is true (dropped, late, evicted: the ones worth a look). Returns them and how many are left out."""
    if len(items) <= last + extra:
        return list(items), 0
    head, tail = items[: len(items) - last], items[len(items) - last :]
    picked = [it for it in head if flagged is not None and flagged(it)][-extra:] if extra else []
    return picked + tail, len(items) - len(picked) - len(tail)


def _ids(ids: list[int], most: int = 20) -> str:
    """Frame ids as a short list: 0, 1, 2 … and 37 more."""
    text = ", ".join(str(i) for i in ids[:most])
    return text + (f" … and {len(ids) - most:,} more" if len(ids) > most else "")


def _left_out(n: int, total: int, what: str, rule: str, where: str) -> str:
    """The note under a cut chart or table: how many of what are not shown, by which rule, and where they are."""
    if not n:
        return ""
    return f"<p class='note'>{total - n:,} of {total:,} {what} shown ({rule}); the other {n:,} are in {_e(where)}.</p>"
