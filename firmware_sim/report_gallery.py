"""The anomaly gallery of ``report.html``: the run's highest-scoring patches decoded from the downlink packet files
(:func:`.report_gallery_index.gallery_read`: only the pass files new since the last report are read), how they were
chosen, and what of the packet files could not be shown.

numpy and the standard library only, like the rest of the flight runtime.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgeae.atomic import remove_files, write_bytes

from .atomic_files import remove_stale_temps
from .report_gallery_index import INDEX_NAME, gallery_read
from .report_html import _e, _ids, _left_out, _num, _short_source, _table, png_bytes, select
from .report_inputs import _read_json
from .report_packets import assemble, load_samples

GALLERY_MAX = 48  # the gallery shows the highest-scoring patches of the whole run, this many at most
NOTES_MAX = 50  # notes on the packet files shown under the gallery (each is one pass file's and kind's)
ROWS_LAST = 100  # the fallback table (no patch decoded) shows the last frames' chosen patches

IMAGE_NAME = re.compile(r"anomaly_f\d+_x\d+_y\d+\.png")  # a gallery image's name (report_img/)

SCORE_MEANING = {
    "cae-masked": "the mean squared error of the CAE's rebuild of a patch from a sample of its pixels, over the "
    "patch's valid pixels (samples scaled to [0, 1])",
    "vae": "the β-VAE's a(x) = ||x - x_hat||^2 + λ||μ||^2 summed over the patch (or terms-max: each term over its "
    "median in the frame, the larger)",
}


def _scoring_note(out: Path) -> str:
    """How the patches were chosen, from the run's mission settings (mission.json): score, model, patch size,
    stride and whether a threshold or only the top-k rank selected them."""
    doc = _read_json(out / "mission.json")  # a damaged one (a list, a number) is the same as none here
    m = doc.get("settings") if isinstance(doc, dict) else None
    m = m if isinstance(m, dict) else {}
    if not m:
        return ""
    method = str(m.get("anomaly.method", ""))
    score = SCORE_MEANING.get(method, method)
    if method == "vae" and m.get("anomaly.score"):
        score += f"; this run ranks by {m['anomaly.score']}"
    threshold = m.get("anomaly.threshold")
    chosen = (
        f"patches scoring above {threshold}, at most {m.get('anomaly.top_k')} a frame"
        if threshold is not None
        else f"no threshold: the top {m.get('anomaly.top_k')} of each frame by rank"
    )
    return (
        f"Score: {score}. Model {m.get('anomaly.model')}, {m.get('anomaly.patch')}-px patches every "
        f"{m.get('anomaly.stride')} px; sent: {chosen}."
    )


def console_lines(notes: list[tuple[str, str]]) -> list[str]:
    """The notes ``(pass file, what)`` as one line per pass file, for the console."""
    by: dict[str, list[str]] = {}
    for file, text in notes:
        by.setdefault(file, []).append(text)
    return [f"{file}: {'; '.join(texts)}" for file, texts in by.items()]


def _notes_list(notes: list[tuple[str, str]]) -> str:
    """The notes under the gallery: the first :data:`NOTES_MAX`, then how many more and on how many pass files."""
    shown, rest = notes[:NOTES_MAX], notes[NOTES_MAX:]
    items = [f"<li>{_e(file)}: {_e(text)}</li>" for file, text in shown]
    if rest:
        files = len({file for file, _ in rest})
        items.append(
            f"<li>… and {len(rest):,} more, on {files:,} pass file(s) (every pass file's notes are one warning line "
            "on the console of firmware-sim run or report)</li>"
        )
    return "<p class='note'>Not shown from the downlink packet files:</p><ul class='note'>" + "".join(items) + "</ul>"


def _none_chosen(s: dict[str, Any]) -> str:
    """Why no patch was chosen for the downlink: no frame processed (every one dropped: until session 36 this said
    "none above the threshold, or no anomaly model" then too), or none that scored above the threshold."""
    f = s.get("frames") or {}
    if f.get("processed") == 0:  # a summary that does not say (before session 31): the general sentence
        if not f.get("acquired"):
            return "No frame was acquired, so no patch was scored."
        dropped = _num(f.get("dropped") or 0)
        return f"No frame was processed ({dropped} dropped: see the ledger), so no patch was scored."
    return "No patch was chosen for the downlink (none above the threshold, or no anomaly model)."


def _gallery(out: Path, s: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The gallery section, and the notes ``(pass file, what)`` on what of the downlink packet files could not be
    shown (also printed on the console, one line per pass file)."""
    # only the pass files new since the last report; its index keeps twice the patches shown in full
    read = gallery_read(out / "downlink", out / "report_img" / INDEX_NAME, 2 * GALLERY_MAX)
    notes, patches = list(read.notes), read.patches
    total = len(patches) + len(read.closed)  # those the index keeps by key only rank below every one shown
    body = ""
    if patches:
        img_dir = out / "report_img"
        img_dir.mkdir(exist_ok=True)
        figs = []
        for p in patches[:GALLERY_MAX]:  # assembled one at a time: memory of one patch, whatever the run
            notes += load_samples(out / "downlink", p)  # its pieces read again, each by its offset
            pixels, complete, overlapping = assemble(p)
            for piece in p["pieces"].values():
                piece.samples = None
            name = f"anomaly_f{p['frame_id']}_x{p['x']}_y{p['y']}.png"
            write_bytes(img_dir / name, png_bytes(pixels, p["bit_depth"]), durable=False)  # whole or none
            part = "" if complete else " (partly sent)"
            if overlapping:
                notes.append(
                    (
                        p["file"],
                        f"frame {p['frame_id']} patch at ({p['x']}, {p['y']}) (first received here): {overlapping} "
                        "packet(s) overlapping an earlier one skipped",
                    )
                )
            figs.append(
                f"<figure><img src='report_img/{name}' alt='frame {p['frame_id']} patch at {p['x']},{p['y']}'>"
                f"<figcaption>frame {p['frame_id']} ({p['x']}, {p['y']})<br>score {p['score']:.4g}{part}"
                "</figcaption></figure>"
            )
        more = ""
        if total > GALLERY_MAX:
            left = sorted({p["frame_id"] for p in patches[GALLERY_MAX:]} | {fid for fid, _ in read.closed})
            none = sorted(set(left) - {p["frame_id"] for p in patches[:GALLERY_MAX]})
            more = (
                f"<p class='note'>{total - GALLERY_MAX:,} lower-scoring patches not shown, of frame(s) "
                f"{_e(_ids(left))}" + (f"; none of frame(s) {_e(_ids(none))} is shown" if none else "") + ".</p>"
            )
        body = (
            f"<p class='note'>The {min(len(patches), GALLERY_MAX)} highest-scoring patches of the run (of "
            f"{total:,}, every frame together) as the ground receives them: decoded from the downlink "
            "packet files, full resolution, highest score first. (x, y) is the top-left pixel. "
            f"{_e(_scoring_note(out))}</p>"
            f"<div class='gallery'>{''.join(figs)}</div>{more}"
        )
    else:
        chosen, cut = select(s.get("anomalies") or [], ROWS_LAST)
        rows = [
            [
                _e(a.get("frame_id")),
                (_short_source(a.get("source"))),
                _e(", ".join(f"({p['x']}, {p['y']}) {p['score']:.4g}" for p in a.get("patches", []))),
            ]
            for a in chosen
        ]
        if notes:  # packets came, none could be read: not "nothing downlinked yet"
            intro = (
                "No patch could be decoded from the downlink packet files (see below); the patches chosen for it are:"
            )
        else:
            intro = "No patch packet was downlinked yet; the patches chosen for it are:"
        if rows:
            body = (
                f"<p class='note'>{intro}</p>"
                + _table(["frame", "source", "patches (x, y) score"], rows, left=3)
                + _left_out(cut, len(rows) + cut, "frames", "the last ones", "summary.json ('anomalies')")
            )
        elif not notes:
            body = f"<p>{_e(_none_chosen(s))}</p>"
    if notes:
        body += _notes_list(notes)
    return body, notes


def remove_unshown(out: Path, page: str) -> list[str]:
    """Remove the gallery images of ``out/report_img/`` that ``page`` (the report just written) does not show, and
    the temporary files a killed report left there; returns the names removed. Only regular files named as the
    gallery names its images (:data:`IMAGE_NAME`) are removed: a link, a folder or a file of another name is left.
    Called once the page is written, so a report that fails leaves the earlier page's images (until session 36 the
    images of patches no longer shown stayed for good, one per patch ever shown), and only by a caller that holds
    the folder (:mod:`edgeae.folder_lock`; a run on a file system that cannot lock holds nothing, so it does not
    call it): every writer of ``report_img/`` that can lock holds it, so every temporary file there is stale
    whatever its pid (until review r7 of session 36 a pid this process could not see running counted as gone, and
    a report run from another PID namespace deleted a live run's half-written image)."""
    shown = set(re.findall(r"report_img/(anomaly_f\d+_x\d+_y\d+\.png)", page))
    folder = out / "report_img"
    gone = remove_files(folder, lambda name: IMAGE_NAME.fullmatch(name) is not None and name not in shown)
    ours = lambda name: IMAGE_NAME.fullmatch(name) is not None or name == INDEX_NAME  # noqa: E731
    return gone + remove_stale_temps(folder, ours, any_pid=True)
