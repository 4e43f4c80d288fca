"""Generate benchmarks/RESULTS.md from the JSON and markdown the stages wrote (never typed by hand).

What a section shows: each stage record in ``stages.json`` (written by ``python -m benchmarks``) names the files its
run wrote (``files``, paths relative to the stage folder). A section shows those tables and plots only; tables left
in the folder by an earlier run are not shown as this run's: the section names them and the run they came from
(``earlier``). A record without ``files`` (stages recorded before session 31) shows every table in its folder, as
before. A stage whose only record is a failed run is marked FAILED at the top of its section; a failed rerun of a
stage that has a good record keeps that record and its tables, and the section says at its top that the latest
rerun failed (``last_failure``: when, at which commit, the command and its log; or, with ``error``, that its
commands succeeded but publishing their files failed). A timed stage measured at a 1-minute load above 1
(``under_load``) carries a warning that its timings are not to be quoted; so does one whose record predates that
field (no ``quiet``) and whose recorded load at its start is above the same limit. A section whose files' own
records (commit, date, CPU/SIMD) are not those of its stage record's run says so at its top ("Parts from other runs
or commits"), and a record without thread settings or versions says when they began to be recorded.

The page depends only on files a clean clone has: files git ignores (thumbnails under ``topk/``, see .gitignore) are
neither linked nor counted. Headings inside an embedded table file are demoted below the section's own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.report_machine import _machine_md, _where_note, provenance_note, unrecorded_note
from benchmarks.report_machine import simd_level as simd_level
from benchmarks.report_machine import simd_note as simd_note
from benchmarks.report_machine import threads_note as threads_note

STAGE_TABLES = ("results.md", "scan_throughput.md", "table.md", "summary.md", "report.md", "parity.md")
MAX_PLOTS = 12
"""Plots linked per section; the rest are counted with the folders that hold them."""

FLOAT_NOTE = (
    "fp32 results compared with PyTorch (PSNR above ~140 dB, max abs ~1e-7) are float rounding: they are exact on "
    "a rerun on the same CPU but move with its SIMD level (AVX2 / AVX-512 / VNNI / AMX: each section names the "
    "level its run recorded, where it did), by up to ~11 dB (the rover encoder's fp32 ONNX file, `python -m "
    "benchmarks --only export`: 144.6 dB on AVX2, 155.9 on AVX-512), and some int8-vs-fp32 rank figures move in "
    "their 4th decimal (the VAE's int8 TFLite tail Spearman, 0.9986 vs 0.9984). Quality figures against the "
    "original images are identical at the printed precision where a rerun on another CPU checked them (session 35:"
    " the command of the reconstruction acceptance section below, published from an AVX2 host, rerun on AVX-512 "
    "VNNI: fp32 PyTorch PSNRs up to 1.2e-7 dB apart, classical and int8 ONNX figures the same to every printed digit)."
)


class RecordError(ValueError):
    """A stages.json or machine.json that cannot be read as the record it should be (the message says what to do)."""


def load_record(path: Path, remedy: str) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RecordError` naming the file, what is wrong and ``remedy`` when it is not
    one (truncated, empty, a list); in a ``stages.json`` every stage's record must be an object too."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RecordError(f"{path} cannot be read as JSON ({e}): {remedy}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} holds a JSON {type(data).__name__}, not an object: {remedy}")
    if path.name == "stages.json":
        bad = [name for name, st in data.items() if not isinstance(st, dict)]
        if bad:
            raise RecordError(f"{path}: the record of {', '.join(bad)} is not an object: {remedy}")
    return data


def speed_table(bench_json: Path) -> str:
    """pytest-benchmark JSON -> one markdown table with the ratio to PyTorch eager of the same run."""
    data = json.loads(bench_json.read_text())
    rows = [b for b in data["benchmarks"] if b.get("extra_info", {}).get("runtime")]
    torch_median = {
        (b["extra_info"]["model"], b["extra_info"]["batch"], b["extra_info"]["threads"]): b["stats"]["median"]
        for b in rows
        if b["extra_info"]["runtime"] == "torch-fp32"
    }
    head = (
        "| model | runtime | batch | threads | median ms | IQR ms | items/s | MPix/s | peak RSS MB | "
        "speed-up vs torch | GOP/s | % of peak |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for b in sorted(rows, key=lambda b: (b["extra_info"]["model"], b["extra_info"]["batch"],
                                         b["extra_info"]["threads"], b["extra_info"]["runtime"])):  # fmt: skip
        e, s = b["extra_info"], b["stats"]
        ref = torch_median.get((e["model"], e["batch"], e["threads"]))
        ratio = f"{ref / s['median']:.2f}×" if ref else "n/a"
        lines.append(
            f"| {e['model']} | {e['runtime']} | {e['batch']} | {e['threads']} | {s['median'] * 1e3:.3f} | "
            f"{s['iqr'] * 1e3:.3f} | {e['items_per_s']:.0f} | {e['mpix_per_s']:.1f} | {e['peak_rss_mb']:.0f} | "
            f"{ratio} | {e['achieved_gops']:.1f} | {100 * e['fraction_of_peak']:.1f} |"
        )
    peaks: dict[Any, dict[str, Any]] = {}
    for b in rows:
        e = b["extra_info"]
        peaks.setdefault(e["threads"], {})["int8" if "int8" in e["runtime"] else "fp32"] = e["machine_peak_gops"]
    note = "; ".join(
        f"{t} thread(s): fp32 {p.get('fp32')} GOP/s, int8 {p.get('int8')} GOP/s" for t, p in sorted(peaks.items())
    )
    return (
        "\n".join(lines)
        + f"\n\nMachine peak (onnxruntime 2048³ MatMul / MatMulInteger, best of 5, same session): {note}.\n"
        "GOP/s counts 2 operations per multiply-accumulate of the model's conv/linear layers (benchmarks/opcount.py)."
        " Peak RSS is the process high-water mark while the case ran (all runtimes share one process).\n"
    )


def _status_lines(st: dict[str, Any], timed: bool = False) -> list[str]:
    """The warnings at the top of a section: a failed run (the record's own or a rerun's after a good record) and a
    run of a ``timed`` stage measured under load. Records written before the failure fields existed get no failure
    lines; one written before ``under_load`` (no ``quiet``) is judged by the load its record gives at its start."""
    parts: list[str] = []
    rc = st.get("returncode")
    if rc and st.get("error"):  # its commands succeeded, publishing their files did not; no good record
        left = "some of its files may be in the stage folder" if st.get("partial") else "not published"
        parts += [
            f"**FAILED: the last run of this stage succeeded, but {st['error']}** (its output is in `{st.get('log')}` "
            f"on the machine that ran it; what it wrote is in `{st.get('staging')}` there, {left}). "
            "Files in the stage folder from earlier runs are named below, not shown.",
            "",
        ]
    elif rc and "log" in st:  # the stage has no good record: this failed run is all there is
        parts += [
            f"**FAILED: the last run of this stage exited with status {rc}** (its output is in `{st['log']}` on the "
            f"machine that ran it; what it wrote is in `{st.get('staging')}` there, not published). "
            "Files in the stage folder from earlier runs are named below, not shown.",
            "",
        ]
    elif rc:
        parts += [
            f"**FAILED: the last run of this stage exited with status {rc}** (that run kept no log). "
            "Only what that run wrote before it stopped is shown below.",
            "",
        ]
    fail = st.get("last_failure")
    if isinstance(fail, dict):
        cmds = "; ".join(f"`{c}`" for c in fail.get("commands") or [])
        run = f"the {fail.get('size')} run of {fail.get('date')} at commit `{fail.get('commit')}`: {cmds}"
        if fail.get("error"):  # its commands succeeded, publishing their files did not
            left = (
                "Some of its files may have replaced those of the last run that succeeded: rerun the stage."
                if fail.get("partial")
                else "Everything below is from the last run that succeeded, which that failure left as it was."
            )
            parts += [
                f"**FAILED: the last run of this stage succeeded, but {fail['error']}** ({run}; its output is in "
                f"`{fail.get('log')}` and what it wrote in `{fail.get('staging')}` on the machine that ran it). "
                + left,
                "",
            ]
        else:
            parts += [
                f"**FAILED: the last run of this stage exited with status {fail.get('returncode')}** ({run}; its "
                f"output is in `{fail.get('log')}` on the machine that ran it). Everything below is from the last run "
                "that succeeded, which that failure left as it was.",
                "",
            ]
    if st.get("under_load") is not None:
        parts += [f"**Measured at 1-minute load {st['under_load']}: timings not to be quoted.**", ""]
    elif timed and "quiet" not in st and (start := _load_at_start(st)) is not None and start > _load_limit():
        parts += [f"**Measured at 1-minute load {start} (its record's load at the start; the record predates the "
                  "harness's under-load mark): timings not to be quoted.**", ""]  # fmt: skip
    return parts


def _load_at_start(st: dict[str, Any]) -> float | None:
    """The 1-minute load a stage record gives at its start (``load_average_before_after[0][0]``), or None."""
    try:
        got = st["load_average_before_after"][0][0]
    except (KeyError, IndexError, TypeError):
        return None
    return float(got) if isinstance(got, int | float) and not isinstance(got, bool) else None


def _load_limit() -> float:
    from benchmarks.stage_run import LOAD_LIMIT  # here: stage_run imports this module

    return LOAD_LIMIT


def _timed(name: str) -> bool:
    """Whether the harness times stage ``name`` (waits for a quiet machine; benchmarks/stages.py)."""
    from benchmarks.stages import STAGES

    stage = STAGES.get(name)
    return bool(stage and stage.timed)


def _run_label(origin: dict[str, Any] | None) -> str:
    if not origin:
        return "a run that recorded no files"
    label = f"the {origin.get('size')} run of {origin.get('date')} at commit `{origin.get('commit')}`"
    if origin.get("listed") is False:  # that record listed no files: the file may be from a run before it
        label += " (the stage's previous record, which did not list its files: it may come from an earlier run)"
    return label


def _earlier_note(rel_folder: str, kept: list[str], earlier: dict[str, Any]) -> list[str]:
    """Lines naming the tables and plots in the folder that the recorded run did not write, by the run they are from."""
    by_run: dict[str, list[str]] = {}
    for rel in kept:
        by_run.setdefault(_run_label(earlier.get(rel)), []).append(rel)
    lines = []
    for label, rels in by_run.items():
        lines.append(
            f"Not shown: {len(rels)} file(s) in `{rel_folder}/` that this run did not write, from {label} "
            f"(not this section's run): " + ", ".join(f"`{r}`" for r in rels) + "."
        )
    return lines


def _parity_note(text: str) -> str:
    if "| budget |" in text:
        return ""
    return (
        "_This table was written by an earlier `edgeae export` than the current one: it predates the budget and "
        "passed columns of the parity table (its tail table's last column, `passed`, is the tail budget alone). "
        "The Reproduce commands write the current layout._"
    )


def git_ignored(paths: list[Path]) -> set[Path]:
    """Those of ``paths`` (files under one folder) that git ignores in the checkout holding them: a clean clone lacks
    them. Empty when the folder is in no git checkout or git is not installed (every file counts then)."""
    if not paths:
        return set()
    try:
        top = subprocess.run(["git", "-C", str(paths[0].parent), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=False)  # fmt: skip
    except OSError:
        return set()
    if top.returncode != 0 or not top.stdout.strip():
        return set()
    root = Path(top.stdout.strip()).resolve()
    rel: dict[str, Path] = {}
    for p in paths:
        try:
            rel[(p.parent.resolve() / p.name).relative_to(root).as_posix()] = p
        except ValueError:  # outside that checkout
            continue
    # exit status 0: some ignored, 1: none, 128: an error (then count every file, as without git)
    got = subprocess.run(["git", "-C", str(root), "check-ignore", "--stdin", "-z"], input="\0".join(rel),
                         capture_output=True, text=True, errors="surrogateescape", check=False)  # fmt: skip
    if got.returncode != 0:
        return set()
    return {rel[r] for r in got.stdout.split("\0") if r in rel}


_HEADING = re.compile(r"^(#{1,6})(?=\s|$)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def demote_headings(text: str, level: int) -> str:
    """``text`` (markdown) with its ATX headings shifted so that the highest is ``level + 1`` (capped at 6), keeping
    their nesting: an embedded report's ``#`` title then sits below the ``level`` heading it is shown under."""
    lines = text.split("\n")
    fenced = False
    found: list[tuple[int, int]] = []  # (line index, heading level)
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _HEADING.match(line)):
            found.append((i, len(m.group(1))))
    if not found:
        return text
    shift = max(0, level + 1 - min(n for _, n in found))
    for i, n in found:
        lines[i] = "#" * min(6, n + shift) + lines[i][n:]
    return "\n".join(lines)


def _plots_md(folder: Path, plots: list[Path], results_md: Path) -> list[str]:
    lines = []
    for png in plots[:MAX_PLOTS]:
        link = Path(os.path.relpath(png.resolve(), results_md.resolve().parent)).as_posix()
        lines.append(f"![{png.stem}]({link})")
    rest = plots[MAX_PLOTS:]
    if rest:
        per: dict[str, int] = {}
        for png in rest:
            rel = Path(os.path.relpath(png.parent.resolve(), results_md.resolve().parent)).as_posix()
            per[rel] = per.get(rel, 0) + 1
        where = ", ".join(f"{n} in `{rel}/`" for rel, n in per.items())
        lines += ["", f"{len(rest)} more plot(s) not linked here (the first {MAX_PLOTS} are): {where}."]
    return lines


def stage_section(name: str, st: dict[str, Any], folder: Path, results_md: Path) -> list[str]:
    """The markdown lines of one stage's section (see the module docstring for what it shows)."""
    load = st.get("load_average_before_after")
    where = st.get("machine")
    written = st.get("files")
    on_disk = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    ignored = git_ignored(on_disk)  # not in a clean clone: the page must not depend on them
    every = [p for p in on_disk if p not in ignored]
    mine = every if written is None else [p for p in every if p.relative_to(folder).as_posix() in set(written)]
    jsons = [p for p in mine if p.suffix == ".json"]
    parts = [f"## {st.get('title', name)}", "", *_status_lines(st, _timed(name))]
    origin = provenance_note(where, load, folder, jsons)
    parts += [origin, ""] if origin else []
    rc = st.get("returncode")
    cmds = st.get("commands") or []
    parts += ["Reproduce:", "", "```", *cmds, "```", ""]
    load_note = f"; 1-minute load average before/after {load[0][0]}/{load[1][0]}" if load else ""
    status = f"0, then {st['error']}" if rc and st.get("error") else rc  # a run whose publishing failed
    parts.append(
        f"Size: {st.get('size')}; wall time {st.get('seconds')} s; exit status {status}{load_note}."
        + _where_note(where)
        + simd_note(where, folder, jsons)
        + unrecorded_note(where)
    )
    parts.append("")
    bench = folder / "benchmark.json"
    if bench in mine:
        parts += [speed_table(bench), ""]
    for md in (p for p in mine if p.suffix == ".md" and p.name in STAGE_TABLES):
        rel = md.relative_to(folder)
        level = 2  # the section's ## heading
        if len(rel.parts) > 1:
            parts += [f"### {rel.parent}", ""]
            level = 3
        text = md.read_text().strip()
        if md.name == "parity.md" and text.startswith("# "):  # its title: the ### heading above names the model
            text = text.split("\n", 1)[-1].strip()
        if md.name == "parity.md" and _parity_note(text):
            parts += [_parity_note(text), ""]
        parts += [demote_headings(text, level), ""]
    if written is not None:
        kept = [
            p.relative_to(folder).as_posix()
            for p in every
            if p not in mine and (p.suffix == ".png" or (p.suffix == ".md" and p.name in STAGE_TABLES))
        ]
        if kept:
            rel_folder = Path(os.path.relpath(folder.resolve(), results_md.resolve().parent)).as_posix()
            parts += [*_earlier_note(rel_folder, kept, st.get("earlier") or {}), ""]
    parts += _plots_md(folder, [p for p in mine if p.suffix == ".png"], results_md)
    parts.append("")
    return parts


MACHINE_REMEDY = "delete it (the next `python -m benchmarks` run writes it again) or restore it from git"
STAGES_REMEDY = "restore it from git (`git checkout -- <that file>`) or move it away to start a new record"


def write_results(out: Path, results_md: Path, label: str | None = None) -> Path:
    """Compose RESULTS.md from ``out/machine.json``, ``out/stages.json`` and each stage's outputs (``label``: how the
    page names ``out``, default its path as given). Written to a temporary file, then renamed over ``results_md``.
    A corrupt JSON record raises :class:`RecordError`."""
    parts = ["# edgeae benchmark results", "",
             "Generated by `python -m benchmarks` (benchmarks/report.py) from the JSON under "
             f"`{label or out}/`. Do not edit by hand: rerun the command of a section to reproduce it.", "",
             FLOAT_NOTE, ""]  # fmt: skip
    machine = out / "machine.json"
    if machine.is_file():
        note = "The machine of the most recent `python -m benchmarks` run; each section says where it ran."
        parts += ["## Machine", "", note, "", _machine_md(load_record(machine, MACHINE_REMEDY))]
    stages = load_record(out / "stages.json", STAGES_REMEDY) if (out / "stages.json").is_file() else {}
    for name, st in stages.items():
        parts += stage_section(name, st, out / name, results_md)
    write_atomic(results_md, "\n".join(parts).rstrip() + "\n")
    return results_md


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
