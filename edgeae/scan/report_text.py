"""A finished scan in words: report.md's text and the short summary ``edgeae scan`` prints.

Both are rendered from report.json's dict alone (``edgeae.scan.report.finalize`` writes it), so a report can be
rendered again from a stored scan without its results.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# control characters (a line break is legal in a Linux file name): a new line would end the span or the paragraph
# and let the rest of the name start a heading or an HTML block
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

PROJECTION_PATCHES = 10_000
"""Patches scored in a run below which the archive projection says its rate is a rough one (start-up and the first
batches weigh on a short run: 0.7 s of scoring on 6 small images gave 2,712 patches/s, a fifth of the NAC-size
strip's 13,175 in the README; session 46's audit)."""


def _one_line(text: object) -> str:
    """``text`` with each control character written as ``\\xNN`` (``bad\\x0a<script>.png``): one line of text."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _code(text: object, cell: bool = False) -> str:
    """``text`` as a Markdown code span that survives any file name: a fence longer than its longest run of
    backticks, in a table cell ``|`` escaped (GFM splits cells on it even inside code spans), control characters as
    ``\\xNN`` (a line break in a name ended the span: review s36 r17)."""
    t = _one_line(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", t)), default=0) + 1)
    pad = " " if t.startswith("`") or t.endswith("`") else ""
    span = f"{fence}{pad}{t}{pad}{fence}"
    return span.replace("|", "\\|") if cell else span


# what starts a Markdown link, image, code span, emphasis, strikethrough, HTML or entity inline (a backslash would
# undo an escape)
_MARKUP = re.compile(r"([\\`*_~\[\]<&])")


def _text(text: object) -> str:
    """``text`` (an error, a reason, a path) as Markdown text that renders as it reads: each character that can start
    a Markdown link or image, a code span, emphasis, strikethrough, HTML or an entity (``\\ ` * _ ~ [ ] < &``)
    backslash-escaped, so a viewer shows ``<script>`` or ``<!--`` in a file name as text instead of running or hiding
    it, ``![x](https:...)`` as text instead of fetching the image (before review s36 r6 only ``<`` was escaped), and
    ``runs/_raw_/x`` or ``a~~b~~`` as written, not with ``raw`` in italics or ``b`` struck through (until session 37
    ``_`` and ``~`` were left as they were). The raw report.md then holds ``runs/\\_raw\\_``; the file names of its
    lists and tables are code spans (:func:`_code`), which need no escape."""
    return _MARKUP.sub(r"\\\1", _one_line(text))


def _plain(text: object) -> str:
    """``text`` as it is: the console's lines (:func:`report_summary`), which no Markdown viewer renders."""
    return str(text)


# what score "a" means for a VAE (report.json's model_kind; a CAE's score is named by _score_label; reports
# written before model_kind say neither)
_SCORE_A = {
    "vae": " (the VAE's a(x) = ||x - x_hat||^2 + λ||μ||^2 of each patch: higher is more unusual; its scale "
    "depends on the model and the patch size, so compare scores within one model)",
}


def _score_label(r: dict[str, Any]) -> str:
    """The name of the ranking score: a CAE's is its masked-reconstruction error (``cae``, as ``edgeae score``
    names it), not a(x), whatever ``--score`` default (``a``) was recorded; with the patch size when the report
    records it, since a CAE's scale depends on it."""
    score = r.get("score", "a")
    if score != "a" or r.get("model_kind") != "cae":
        return f"`{score}`" + {
            "a": _SCORE_A.get(r.get("model_kind", ""), " (the model's score of each patch: higher is more unusual)"),
            "terms-max": " (each of the VAE's terms over its median in the image, the larger)",
            "local-z": " (each patch's VAE latents and error against its neighbours on the image)",
            "context-knn": " (each patch's VAE latents, scaled within its image and its product, against every "
            "patch scanned: scores are relative to this set)",
        }.get(score, "")
    patch = r.get("patch")
    size = f" {patch}-px" if patch else ""
    same = f"; `edgeae score --patch {patch}` gives these numbers, its default CAE patch is 64 px" if patch else ""
    return (
        f"`cae` (the CAE's masked-reconstruction error of each{size} patch: the squared error over the pixels a "
        "fixed mask hid from the model; higher is more unusual; its scale depends on the patch size, so compare "
        f"scores within one model and patch size{same})"
    )


def _count(n: int, noun: str, plural: str = "") -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _seconds(s: float) -> str:
    """``s`` seconds for report.md: to 0.1 s, or to the ms below 0.1 s (a resume's scanning of a few patches)."""
    return f"{s:.1f} s" if s >= 0.1 else f"{s:.3f} s"


def _this_run(r: dict[str, Any]) -> str:
    """The run's line: what it scanned and how fast, or that it had nothing to scan. The context-knn ranking is given
    apart, per ranked patch: it ranks the whole set, so folded into this run's rate it made a resume of a few images
    look hundreds of times slower."""
    n = r.get("images_scanned", 0)
    if not n:
        return "- this run: no image scanned (every image of the archive is recorded: done, failed or skipped)"
    patches = _count(r.get("patches", 0), "patch", "patches")
    seconds = r.get("seconds", 0)
    ctx = r.get("context_knn")
    if not ctx:
        return (
            f"- this run: {_count(n, 'image')}, {patches} in {seconds:.1f} s = "
            f"**{r.get('patches_per_s', 0):.1f} patches/s** (wall, start-up included)"
        )
    scanning = max(seconds - ctx["seconds"], 0.0)
    rate = r.get("patches", 0) / scanning if scanning > 0 else 0.0
    per_ranked = f" ({1000 * ctx['seconds'] / ctx['patches']:.3g} ms a ranked patch)" if ctx.get("patches") else ""
    return (
        f"- this run: {_count(n, 'image')}, {patches} in {seconds:.1f} s (wall): {_seconds(scanning)} scanning = "
        f"**{rate:,.1f} patches/s** (start-up included) and {_seconds(ctx['seconds'])} ranking the set's "
        f"{_count(ctx['patches'], 'patch', 'patches')} together{per_ranked}"
    )


def report_markdown(r: dict[str, Any]) -> str:
    archive = ", ".join(_code(a) for a in r.get("archive") or []) or "(not recorded)"
    lines = [
        f"# edgeae scan: {_text(r['out'])}",
        "",
        f"- archive: {archive}",
        f"- model {_code(r['model'])} ({_code(r.get('artifact', '?'))}, sha256 {r['artifact_hash'][:16]}…), "
        f"engine `{r.get('engine')}`, score " + _score_label(r),
        *_facts(r, _text),
        *_sections(r),
    ]
    return "\n".join(lines) + "\n"


def _facts(r: dict[str, Any], text: Callable[[object], str]) -> list[str]:
    """report.md's lines of counts, rates and layers (the command prints them too, :func:`report_summary`); ``text``
    writes a path or note: :func:`_text` for report.md, :func:`_plain` for the console (a path it can paste)."""
    lines = [
        f"- images: {r['images']} ({r['done']} done, {r['failed']} failed, {r.get('skipped', 0)} skipped by the "
        f"quality filter, {r['pending']} pending)",
        _this_run(r),
    ]
    if r.get("recorded_not_in_archive"):
        lines.append(
            f"- {_count(r['recorded_not_in_archive'], 'image')} recorded in this folder by earlier runs "
            "not in this archive: left out of these results (their parts are kept; scan their archive too to "
            "include them)"
        )
    if r.get("patches_per_s_scoring"):
        lines.append(
            f"- scoring: **{r['patches_per_s_scoring']:.1f} patches/s** over {r['scoring_seconds']:.1f} s of scoring, "
            f"after {r['startup_seconds']:.1f} s of start-up ("
            + (
                "Ray up and the actors asked for; their start and model loading count as scoring)"
                if r.get("engine") == "ray"
                else "processes, models, first chunk)"
            )
        )
    ctx = r.get("context_knn")
    if ctx:
        lines.append(
            f"- context-knn: {_count(ctx['patches'], 'patch', 'patches')} of {_count(ctx['images'], 'image')} ranked "
            f"together in {ctx['seconds']:.1f} s"
            + (
                f"; {_count(n, 'image')} recorded as failed (latents or part unreadable)"
                if (n := ctx["images_failed"])
                else ""
            )
            + (f"; best patches of {_count(n, 'image')} not read back" if (n := ctx.get("thumbnails_unread")) else "")
        )
    ex = r.get("lro_nac_extrapolation")
    if ex:
        lines.append(
            f"- full LRO NAC archive (~{ex['assumed_archive_patches']:.3g} patches, {ex['source']}): "
            f"**{ex['days']:,} days** at {ex['measured_patches_per_s']:,} patches/s, the rate over "
            f"{ex.get('rate_basis') or 'wall time'} ({ex['days_on_100_such_machines']:,} days on 100 machines)"
            + (
                f"; from only {r['patches']:,} patches this run: too few for a rate worth projecting (the README's "
                "NAC-size strip: `python -m benchmarks --only nac --full`)"
                if isinstance(r.get("patches"), int) and r["patches"] < PROJECTION_PATCHES
                else ""
            )
        )
    for layer in r.get("geo_layers") or []:
        note = f" ({text(layer['note'])})" if layer.get("note") else ""  # a layer not in the body's IAU CRS: why
        lines.append(f"- map layer `{layer['layer']}`: {layer['features']} detections -> {text(layer['path'])}{note}")
    if r.get("geo_note"):
        lines.append(f"- {text(r['geo_note'])}")
    fixed = r.get("georeferencing_corrected") or []
    if fixed:  # since session 38 (audit a3 #3): said in parts/*.meta.json only
        first = f"{_code(fixed[0]['file'])}: {text(fixed[0]['note'])}" + (
            f"; and {len(fixed) - 1} more, listed in report.md" if len(fixed) > 1 else ""
        )
        lines.append(f"- georeferencing corrected for {_count(len(fixed), 'product')} ({first}): {CORRECTED_USE}")
    return lines


CORRECTED_USE = (
    "map columns, layer features and score maps use the corrected CRS, while GDAL and QGIS place the product by the "
    "file's own; give it the corrected CRS (e.g. a .aux.xml beside it: docs/archive.md) to overlay them"
)


NO_VALID_PIXEL = "all NaN, transparent or no-data per its label, or inside --margin"
"""Why an image has no valid pixel at all (``edgeae scan``'s report, ``edgeae score``'s warning): its file says so, and
--min-valid 0 would only score filled pixels, the same for every patch. Until session 37 both advised lowering
--min-valid; in session 37 a frame dark throughout was said so too (review r8 #1: --min-valid 0 scores it)."""

DARK_THROUGHOUT = "dark throughout: every pixel read as a dark no-data margin"
"""Why an image whose pixels all lie at or below the margin detection's darkness threshold has no valid pixel as read:
``--min-valid 0`` scores it (its patches then score apart)."""


def _sections(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    blank = r.get("images_without_valid_pixels") or []
    if blank:  # no --min-valid would score these: not told to lower it (until session 37)
        lines += (
            ["", f"## {_count(len(blank), 'image')} with no valid pixel", "",
             f"No valid pixel ({NO_VALID_PIXEL}): nothing to score (--min-valid 0 would give every patch the "
             "same score, of filled pixels only).", ""]
            + [f"- {_code(f)}" for f in blank[:50]]
            + ([f"- ... and {len(blank) - 50} more"] if len(blank) > 50 else [])
        )  # fmt: skip
    said = set(blank)
    empty = [f for f in r.get("images_without_patches") or [] if f not in said]
    dark = set(r.get("images_dark_throughout") or [])  # since session 37 (r8 #1): told --min-valid 0 scores them
    if empty:
        lines += (
            [
                "",
                f"## {_count(len(empty), 'image')} without a scored patch",
                "",
                f"Every patch had less than --min-valid {r.get('min_valid', '')} valid (not no-data) pixels: "
                "a small product with no-data borders, a dark or blank frame, a wide --margin. Lower --min-valid "
                "to score them.",
                "",
            ]
            + [f"- {_code(f)}" + (f" ({DARK_THROUGHOUT}: --min-valid 0 scores it)" if f in dark else "")
               for f in empty[:50]]
            + ([f"- ... and {len(empty) - 50} more"] if len(empty) > 50 else [])
        )  # fmt: skip
    fixed = r.get("georeferencing_corrected") or []
    if fixed:
        lines += (
            ["", f"## Georeferencing corrected for {_count(len(fixed), 'product')}", "",
             f"The reader repaired the CRS each of these products gives GDAL: {CORRECTED_USE}.", ""]
            + [f"- {_code(f['file'])}: {_text(f['note'])}" for f in fixed[:50]]
            + ([f"- ... and {len(fixed) - 50} more (report.json lists them all)"] if len(fixed) > 50 else [])
        )  # fmt: skip
    if r.get("top"):
        lines += [
            "",
            f"## Top {len(r['top'])} patches (thumbnails in topk/, contact sheet topk/gallery.png in this order, "
            "8 a row)",
            "",
            "| rank | file | x | y | score | thumbnail |",
            "|---:|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| {t['rank']} | {_code(t['file'], cell=True)} | {t['x']} | {t['y']} | {t['score']:.6g} | "
            f"{_code('topk/' + t['thumbnail'], cell=True)} |"  # a code span, as the file: its name holds the image's
            for t in r["top"]
        ]
    if r["failures"]:
        lines += ["", "## Failures", ""] + [f"- {_code(f['file'])}: {_text(f['error'])}" for f in r["failures"]]
    if r.get("skipped_products"):
        lines += ["", "## Skipped by the quality filter", ""]
        lines += [f"- {_code(f['file'])}: {_text(f['reason'])}" for f in r["skipped_products"]]
    return lines


SUMMARY_TOP = 3  # the best patches the command names (report.md lists all of topk/)


def report_summary(r: dict[str, Any], out: str) -> str:
    """What ``edgeae scan`` prints: report.md's counts and rates, the best few patches, and where the rest is
    (``out``: the results folder as the user gave it). ``edgeae -v scan`` prints the whole report.md instead."""
    lines = _facts(r, _plain)
    top = r.get("top") or []
    if top:
        best = "; ".join(f"`{t['file']}` x {t['x']} y {t['y']} ({t['score']:.4g})" for t in top[:SUMMARY_TOP])
        lines.append(f"- best: {best}")
    blank = r.get("images_without_valid_pixels") or []
    if blank:
        lines.append(f"- {_count(len(blank), 'image')} with no valid pixel ({NO_VALID_PIXEL})")
    dark = r.get("images_dark_throughout") or []
    if dark:
        it = "it" if len(dark) == 1 else "them"
        said = f"({DARK_THROUGHOUT}: --min-valid 0 scores {it})"
        lines.append(f"- {_count(len(dark), 'image')} without a scored patch {said}")
    if len(r.get("images_without_patches") or []) > len(blank) + len(dark):
        n = len(r["images_without_patches"]) - len(blank) - len(dark)
        lines.append(f"- {_count(n, 'image')} without a scored patch (below --min-valid)")
    folder = Path(out)
    listed = ", ".join(
        m
        for m, on in (("the top patches", top), ("failures", r.get("failures")), ("skips", r.get("skipped_products")))
        if on
    )
    lines.append(
        f"- report: {folder / 'report.md'}" + (f" (all {listed})" if listed else "")
        + (f", thumbnails in {folder / 'topk'}" if top else "") + f"; scores in {folder / 'results.parquet'}"
    )  # fmt: skip
    return "\n".join(lines) + "\n"
