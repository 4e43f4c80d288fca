"""The link benchmark's ``results.md`` (``benchmarks/link_comparison.py``): bytes per frame, mean PSNR per method and
link condition, the longest row gaps of the sparse rows and the tiles lost of the tiled JPEG 2000 row."""

from __future__ import annotations

import io

import numpy as np

CODECS = ("jpeg", "jpeg-rst", "jpeg2000", "webp")
TILED = "jpeg2000-tiles"  # the key of the tiled JPEG 2000 file in ``sizes``


def markdown(rows: list[dict], sizes: list[dict], meta: dict) -> str:
    """``results.md`` of the rows, the per-crop sizes and the run's ``meta``."""
    out = io.StringIO()
    n = len(sizes)
    raw = np.mean([s["raw_bytes"] for s in sizes])
    smp = np.mean([s["sample_bytes"] for s in sizes])
    out.write(f"Bytes per frame (mean of {n} crops, keep {meta['keep']}, {meta['max_packet']}-byte packets)\n\n")
    out.write("| | bytes | vs raw | \n|---|---|---|\n")
    out.write(f"| raw frame | {raw:,.0f} | 1.000 |\n| sampled values (payload) | {smp:,.0f} | {smp / raw:.3f} |\n")
    for key in [k for k in sizes[0] if isinstance(sizes[0][k], dict) and "overhead_bytes" in sizes[0][k]]:
        wb = np.mean([s[key]["wire_bytes"] for s in sizes])
        oh = np.mean([s[key]["overhead_bytes"] for s in sizes])
        codec, layout = key.rsplit(" v", 1)
        note = f"payload {smp / (wb - oh):.2f}× smaller, headers {oh / (wb - oh):.1%}"
        out.write(f"| on the wire, {codec}, layout {layout} | {wb:,.0f} | {wb / raw:.3f} ({note}) |\n")
    for c in CODECS:
        fit = [s[c]["bytes"] for s in sizes if s[c]["bytes"] is not None]
        if not fit:
            out.write(f"| {c} file at the sparse frame's wire bytes | its lowest quality is over the budget on every "
                      f"crop: nothing sent, counted lost | - |\n")  # fmt: skip
            continue
        b = float(np.mean(fit))
        note = "" if len(fit) == n else f" (the {len(fit)} of {n} crops it fits; the others nothing sent, counted lost)"
        out.write(f"| {c} file at the sparse frame's wire bytes{note} | {b:,.0f} | {b / raw:.3f} |\n")
    if TILED in sizes[0]:
        b = np.mean([s[TILED]["bytes"] for s in sizes])
        side = "/".join(str(t) for t in dict.fromkeys(s[TILED]["tile"] for s in sizes))
        n = np.mean([s[TILED]["tiles"] for s in sizes])
        out.write(f"| jpeg2000 in {side}-px tiles ({n:.0f} codestreams, their headers included) at the "
                  f"sparse frame's wire bytes | {b:,.0f} | {b / raw:.3f} |\n")  # fmt: skip
    links = list(dict.fromkeys(r["link"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    codec = meta.get("codec", "none")
    out.write(f"\nMean PSNR (dB) over images and link seeds; in brackets: frames lost (undecodable, or not sent: a "
              f"codec whose lowest quality is over the budget sends nothing). Sparse frames: codec {codec}, payload "
              f"layout {meta.get('layout', 1)} unless the row says otherwise.\n\n")  # fmt: skip
    out.write("| method | wire bytes | " + " | ".join(links) + " |\n|---|---|" + "---|" * len(links) + "\n")
    for m in methods:
        wb = [r["wire_bytes"] for r in rows if r["method"] == m and "wire_bytes" in r and r.get("how") != "over budget"]
        cells = [f"{np.mean(wb):,.0f}" if wb else "-"]
        for lk in links:
            sel = [r for r in rows if r["method"] == m and r["link"] == lk]
            lost = sum(r["lost"] for r in sel)
            cells.append(f"{np.mean([r['psnr'] for r in sel]):.2f} ({lost}/{len(sel)})")
        out.write(f"| {m} | " + " | ".join(cells) + " |\n")
    gap_methods = [m for m in methods if any("longest_row_gap" in r for r in rows if r["method"] == m)]
    if gap_methods:
        out.write("\nLongest run of image rows with no received sample (worst crop and seed)\n\n")
        out.write("| method | " + " | ".join(links) + " |\n|---|" + "---|" * len(links) + "\n")
        for m in gap_methods:
            cells = [
                str(max(r["longest_row_gap"] for r in rows if r["method"] == m and r["link"] == lk)) for lk in links
            ]
            out.write(f"| {m} | " + " | ".join(cells) + " |\n")
    tiled = [m for m in methods if any("tiles_lost" in r for r in rows if r["method"] == m)]
    if tiled:
        out.write("\nTiles lost (each concealed from the received tiles around it): lost of sent, over every crop and "
                  "seed\n\n| method | " + " | ".join(links) + " |\n|---|" + "---|" * len(links) + "\n")  # fmt: skip
        for m in tiled:
            cells = []
            for lk in links:
                sel = [r for r in rows if r["method"] == m and r["link"] == lk]
                lost, sent = sum(r["tiles_lost"] for r in sel), sum(r["tiles"] for r in sel)
                cells.append(f"{lost}/{sent} ({lost / sent:.0%})")
            out.write(f"| {m} | " + " | ".join(cells) + " |\n")
    fills = ", ".join(meta.get("fills", []))
    out.write(f"\nfills {fills}; {meta['seconds']} s; commit {meta['commit']}; `{meta['command']}`\n")
    return out.getvalue()
