"""Run every benchmark and regenerate benchmarks/RESULTS.md.

    python -m benchmarks                  # quick sizes (~1.6 h on 2 cores: the sum of the wall times of the 22 quick
                                          # records in stages.json; the 5 stages recorded at full size are kept, not
                                          # rerun, so they add nothing)
    python -m benchmarks --full           # full sizes
    python -m benchmarks --only speed link
    python -m benchmarks --report-only    # rebuild RESULTS.md from the JSON already in --out

Each stage is one command (printed before it runs, so any number can be reproduced alone) that writes
JSON + a markdown table + plots under ``--out/<stage>/``. ``machine.json`` records machine, versions, thread
settings (the OMP/MKL/OpenBLAS thread variables as given, the CPU count and affinity) and commit, and each stage's
record the same for its run; RESULTS.md is generated from those files by benchmarks/report.py. The commit is taken
once, before anything is written, and passed to the stages (``$EDGEAE_BENCHMARK_COMMIT``). Script paths and the
default ``--out`` are the repository's, and stages run with the repository as their working folder, so the command
works from any folder (``PYTHONPATH=<repository> python -m benchmarks``).

A stage runs in a staging copy of its folder (``--out/.work/staging/<stage>``, git-ignored; mtimes kept, so a stage
that reads its earlier outputs still can); its output is shown and also logged to ``--out/.work/logs/``. Only when
every command of the stage succeeded are the files it wrote (and deletions of its own old files) moved into
``--out/<stage>/`` and its record written. A failed run leaves the folder and the good record as they were, adds to
that record that the latest rerun failed (date, commit, exit status, commands, log: RESULTS.md shows it above the
good tables) and exits 1; Ctrl-C leaves them as they were too and exits 130 (while a stage is being published it is
held back until the stage is published whole). The staging folder of a run that was not published is left for
inspection, named, and replaced by the stage's next run. One stage runs into one --out at a time (a lock).

A quick run never replaces a stage whose record is a good full-size run: a plain ``python -m benchmarks`` skips such
stages with one line, and ``--only <stage>`` runs it but leaves its output in the staging folder (``--full``
replaces the full-size results). Stages that read the data (``../shared/data`` or ``$EDGEAE_DATA``) are skipped with
one line when it is absent, keeping their records (skipped, not failed). Before a timed stage the harness waits up
to 3 minutes for the 1-minute load to fall to 1; a stage that starts above it is recorded ``under_load`` and its
section warns that its timings are not to be quoted. The exit status and the list of failed stages count this
command's stages only.

Stage folders are never cleared by the harness (a stage's own deletions are applied only with its results), so each
stage's record in ``stages.json`` lists the files its run wrote (``files``) and, for the tables and plots left in the
folder by an earlier run, which run wrote them (``earlier``). A section of RESULTS.md shows only its run's files and
names the others with their run. ``stages.json`` is rewritten atomically under a lock (``--out/.work/stages.lock``),
so ``--only`` runs of different stages may share a folder.
"""

from __future__ import annotations

import argparse
import codecs
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from benchmarks.machine import COMMIT_ENV, machine_info, thread_settings, wait_for_quiet
from benchmarks.report import MACHINE_REMEDY, STAGES_REMEDY, RecordError, load_record, write_atomic, write_results
from edgeae.data import find_data_root

KEY_VERSIONS = ("numpy", "torch", "onnxruntime", "ai-edge-litert")
"""Versions each stage records beside its machine (machine.json has every package, for the last run only)."""

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
"""The repository: stage commands name its scripts relative to it and run with it as their working folder."""
DEFAULT_OUT = ROOT / "benchmarks" / "results"
WORK = ".work"
"""Under --out: staging/<stage> (a run's output until it is published), logs/, the locks (all git-ignored)."""
LOAD_LIMIT = 1.0
"""1-minute load above which a timed stage's timings are not to be quoted (the project rule)."""
QUIET_WAIT_S = 180.0
"""How long the harness waits for the load to fall below LOAD_LIMIT before a timed stage."""


Command = tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    """One benchmark: lists of commands for the quick and the full size; ``{out}`` is the stage folder. ``data``: it
    reads the data folder (skipped without it); ``timed``: its tables report timings (waits for a quiet machine)."""

    title: str
    quick: tuple[Command, ...]
    full: tuple[Command, ...]
    data: bool = False
    timed: bool = False


SPEED: Command = (PY, "-m", "pytest", "benchmarks/test_speed.py", "-m", "speed", "-q", "-p", "no:cacheprovider",
                  "--benchmark-json={out}/benchmark.json", "--benchmark-columns=median,iqr,rounds")  # fmt: skip
ZOO_ART = "edgeae/zoo/artifacts/rover-rgb-gtcae/rover-rgb-gtcae"
LINK: Command = (PY, "benchmarks/link_comparison.py", "--out", "{out}", "--methods", "telea,linear,normconv",
                 "--model", "rover-rgb-gtunet", "--encoder", f"{ZOO_ART}-encoder.int8.onnx",
                 "--decoder", f"{ZOO_ART}-decoder.int8.onnx", "--compare-v1")  # fmt: skip
RECON_MODELS = "rover-rgb-gtcae,rover-rgb-gtcae-v2,rover-rgb-gtunet,rover-rgb-unet2-flight,rover-rgb-unet2-ground"
RECON_ACCEPT: Command = (
    PY, "benchmarks/reconstruction_acceptance.py", "--out", "{out}/acceptance",
    "--rover-models", "rover-rgb-unet2-ground,rover-rgb-unet2-flight,rover-rgb-gtunet,rover-rgb-gtcae-v2,"
    "edgeae/zoo/artifacts/rover-rgb-unet2-ground/rover-rgb-unet2-ground.int8.onnx,"
    "edgeae/zoo/artifacts/rover-rgb-unet2-flight/rover-rgb-unet2-flight.int8.onnx",
    "--gray-models", "orbital-gray-unet2-ground,orbital-gray-gtunet",
    "--default-model", "rover-rgb-unet2-ground", "--flight-model", "rover-rgb-unet2-flight",
)  # fmt: skip
# the ground models adapted to each image (edgeae.adapt, default steps) next to the same models as shipped, each
# also cross-checked against linear interpolation (edgeae.crosscheck)
ADAPT: Command = (
    PY, "benchmarks/reconstruction_acceptance.py", "--out", "{out}", "--rover-models", "rover-rgb-unet2-ground",
    "--gray-models", "orbital-gray-unet2-ground", "--default-model", "rover-rgb-unet2-ground", "--keeps", "0.1",
    "--adapt-steps", "100", "--cross-check", "linear", "--threads", "2",
)  # fmt: skip
# the ground models mixed with linear interpolation by the held-out cross-check (edgeae.crosscheck)
XCHECK: Command = (
    PY, "benchmarks/reconstruction_acceptance.py", "--out", "{out}/acceptance", "--rover-models",
    "rover-rgb-unet2-ground,rover-rgb-unet2-flight", "--gray-models", "orbital-gray-unet2-ground",
    "--default-model", "rover-rgb-unet2-ground", "--flight-model", "rover-rgb-unet2-flight",
    "--cross-check", "linear", "--threads", "2",
)  # fmt: skip
XCHECK_GREY: Command = (PY, "benchmarks/grey_rates.py", "--out", "{out}/grey_rates", "--cross-check", "linear")
# the two-context kNN candidate, 8 views per patch, with the fp32 checkpoint and with the shipped int8 ONNX file
HIRISE_CONTEXT: Command = (PY, "-m", "edgeae", "evaluate", "--dataset", "hirise_landmarks", "--views", "8",
                           "--no-plots", "--no-progress")  # fmt: skip
GRAY_VAE_INT8 = "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"
# default models per dataset: orbital-gray-vae (LROC, HiRISE), rover-rgb-vae (MSL validation benchmark)
EVALUATE: Command = (PY, "-m", "edgeae", "evaluate", "--dataset", "all", "--out", "{out}")
MSL_FULL: Command = (PY, "-m", "edgeae", "evaluate", "--dataset", "msl_surface", "--no-plots", "--no-progress", "--out",
                     "{out}")  # fmt: skip

# fmt: off
STAGES: dict[str, Stage] = {
    "speed": Stage(
        "Speed and memory per model and runtime",
        (SPEED,),
        ((*SPEED, "--benchmark-min-rounds=50"),),
        data=True, timed=True,
    ),
    "ratios": Stage(
        "Each runtime vs PyTorch eager, interleaved round by round (the reproducible form of the speed suite's ratios)",
        ((PY, "benchmarks/runtime_ratios.py", "--out", "{out}"),),
        ((PY, "benchmarks/runtime_ratios.py", "--out", "{out}", "--rounds-b1", "300", "--rounds-b32", "30"),),
        data=True, timed=True,
    ),
    "export": Stage(
        "Export parity, sizes and latency of the zoo artifacts",
        ((PY, "-m", "edgeae", "export", "rover-rgb-gtcae", "--format", "all", "--precision", "all",
          "--out", "{out}/rover-rgb-gtcae"),
         (PY, "-m", "edgeae", "export", "orbital-gray-vae", "--format", "all", "--precision", "all",
          "--out", "{out}/orbital-gray-vae")),
        ((PY, "-m", "edgeae", "export", "rover-rgb-gtcae", "--format", "all", "--precision", "all",
          "--out", "{out}/rover-rgb-gtcae"),
         (PY, "-m", "edgeae", "export", "orbital-gray-vae", "--format", "all", "--precision", "all",
          "--out", "{out}/orbital-gray-vae")),
        data=True, timed=True,
    ),
    "reconstruction": Stage(
        "Reconstruction: every model vs the best classical fill per image (issue 11 acceptance), Fig. 4 sweep",
        (RECON_ACCEPT,
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-ground",
          "--model", "rover-rgb-unet2-ground", "--methods", "cae,normconv,linear", "--sweep-methods",
          "cae,normconv,linear,telea", "--crop", "512"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-flight",
          "--model", "rover-rgb-unet2-flight", "--methods", "cae", "--sweep-methods", "cae", "--crop", "512"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae", "--model", "rover-rgb-gtcae",
          "--methods", "cae", "--sweep-methods", "cae", "--crop", "512"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae-v2", "--model",
          "rover-rgb-gtcae-v2", "--methods", "cae", "--sweep-methods", "cae", "--crop", "512")),
        ((*RECON_ACCEPT,),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-ground",
          "--model", "rover-rgb-unet2-ground", "--methods", "cae,telea,ns,linear,nearest,normconv",
          "--sweep-methods", "cae,telea,linear,normconv"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-unet2-flight",
          "--model", "rover-rgb-unet2-flight", "--methods", "cae", "--sweep-methods", "cae"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae", "--model", "rover-rgb-gtcae",
          "--methods", "cae", "--sweep-methods", "cae"),
         (PY, "benchmarks/reconstruction_sweep.py", "--out", "{out}/rover-rgb-gtcae-v2", "--model",
          "rover-rgb-gtcae-v2", "--methods", "cae", "--sweep-methods", "cae")),
        data=True, timed=True,
    ),
    "model_costs": Stage(
        "Zoo reconstruction models: parameters, MACs per pixel, tile latency vs the seed CAE (flight budget)",
        ((PY, "benchmarks/model_costs.py", "--out", "{out}", "--models", RECON_MODELS, "--rounds", "30"),),
        ((PY, "benchmarks/model_costs.py", "--out", "{out}", "--models", RECON_MODELS, "--rounds", "100"),),
        data=True, timed=True,
    ),
    "gt_vs_fixed": Stage(
        "One gt-CAE vs CAEs trained at a fixed masking level (equal training budget)",
        ((PY, "benchmarks/gt_vs_fixed.py", "--out", "{out}", "--gt-model", "rover-rgb-gtcae", "--crops", "2000",
          "--val-crops", "300", "--epochs", "5", "--seed", "1", "--levels", "0.5", "0.9", "0.99",
          "--extra-model", "rover-rgb-gtunet"),),
        ((PY, "benchmarks/gt_vs_fixed.py", "--out", "{out}", "--gt-model", "rover-rgb-gtcae", "--crops", "2000",
          "--val-crops", "300", "--epochs", "5", "--seed", "1", "--fixed", "0.5", "0.7", "0.9", "0.99",
          "--levels", "0.5", "0.7", "0.9", "0.99", "--extra-model", "rover-rgb-gtunet"),),
        data=True,
    ),
    "rate_distortion": Stage(
        "Rate-distortion: sparse pixels, latents and JPEG / JPEG 2000 / WebP / JPEG XL at matched sizes",
        ((PY, "benchmarks/rate_distortion.py", "--out", "{out}", "--quick"),),
        ((PY, "benchmarks/rate_distortion.py", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "link": Stage(
        "Downlink over a lossy link: sparse pixels vs codecs at equal bytes",
        ((*LINK, "--limit", "4", "--seeds", "1"),),
        ((*LINK, "--seeds", "3"),),
        data=True,
    ),
    "lossless": Stage(
        "Lossless sample coding on the wire: none vs delta+deflate vs CCSDS 121 on every test image",
        ((PY, "benchmarks/lossless_coding.py", "--out", "{out}"),),
        ((PY, "benchmarks/lossless_coding.py", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "science": Stage(
        "Science per byte: JPEG 2000 vs sparse + CAE vs prioritised patches at 2/5/10% of the raw frame",
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}", "--quick"),),
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}"),),
        data=True,
    ),
    "science_oracle": Stage(
        "Science per byte with a perfect anomaly ranking (labels rank the patches): the bound for any scorer",
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}", "--quick", "--oracle",
          "--methods", "jpeg2000,prioritised,prioritised-j2k"),),
        ((PY, "benchmarks/science_per_byte.py", "--out", "{out}", "--oracle",
          "--methods", "jpeg2000,prioritised,prioritised-j2k"),),
        data=True,
    ),
    "quantisation": Stage(
        "fp32 vs int8 artifacts: reconstruction quality and anomaly ranking",
        ((PY, "benchmarks/quantisation_quality.py", "--out", "{out}", "--quick"),),
        ((PY, "benchmarks/quantisation_quality.py", "--out", "{out}"),),
        data=True,
    ),
    "anomaly": Stage(
        "Anomaly ranking on labelled data (the lunar paper's table; issue-12 targets in summary.md)",
        ((*EVALUATE, "--limit", "400"),),  # all 10 LROC mosaics, 400 random HiRISE crops / MSL images
        (EVALUATE,),
        data=True,
    ),
    # the MSL target on every image of the held-out sols (the anomaly stage's quick size samples 400 of 1,201)
    "msl_full": Stage(
        "MSL hardware and calibration targets vs ground on every validation-sol image (the issue-12 MSL target)",
        (MSL_FULL,),
        (MSL_FULL,),
        data=True,
    ),
    # the two-context kNN candidate with each patch's 8 rotations and flips, on the HiRISE dev split: the 400-crop
    # sample (quick) or every dev crop, the split the issue-12 ROC AUC target names (full: ~11 min fp32 + ~4 min int8)
    "hirise_context": Stage(
        "HiRISE craters: the two-context kNN candidate with 8 views per patch (crop and product contexts)",
        ((*HIRISE_CONTEXT, "--limit", "400", "--out", "{out}"),
         (*HIRISE_CONTEXT, "--limit", "400", "--model", GRAY_VAE_INT8, "--out", "{out}/int8")),
        ((*HIRISE_CONTEXT, "--out", "{out}"), (*HIRISE_CONTEXT, "--model", GRAY_VAE_INT8, "--out", "{out}/int8")),
        data=True,
    ),
    # the two-context ranking over an archive (edgeae scan --score context-knn on the HiRISE dev crops, 8 views) and
    # how far its kNN reference may be a sample of the set (full: ~3 + ~2 + ~9 min)
    "context_scale": Stage(
        "HiRISE craters: the two-context kNN as an archive scan, and with a sample of the set as its kNN reference",
        ((PY, "-m", "benchmarks.scan_context", "--limit", "400", "--out", "{out}/scan"),),
        ((PY, "-m", "benchmarks.scan_context", "--out", "{out}/scan"),
         (PY, "-m", "benchmarks.scan_context", "--views", "1", "--out", "{out}/scan_1view"),
         (PY, "-m", "benchmarks.context_bank", "--out", "{out}/bank")),
        data=True, timed=True,
    ),
    "nodata_fill": Stage(
        "No-data filled before the evaluation scores (HiRISE craters): the crop's median (tried, not adopted) and "
        "each patch's own mean (what edgeae score and scan do)",
        ((PY, "-m", "benchmarks.nodata_fill", "--limit", "400", "--out", "{out}"),),
        ((PY, "-m", "benchmarks.nodata_fill", "--out", "{out}"),
         (PY, "-m", "benchmarks.nodata_fill", "--modes", "as read,patch mean", "--out", "{out}/session28")),
        data=True,
    ),
    "frame": Stage(
        "Whole-frame costs in the flight runtime",
        ((PY, "-m", "benchmarks.frame_costs", "--out", "{out}", "--quick"),),
        ((PY, "-m", "benchmarks.frame_costs", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "vae_form": Stage(
        "The VAE's decoder as trained vs its exact sub-pixel export form (int8 TFLite and ONNX, interleaved)",
        ((PY, "benchmarks/vae_form.py", "--out", "{out}"),),
        ((PY, "benchmarks/vae_form.py", "--out", "{out}", "--rounds", "60"),),
        data=True, timed=True,
    ),
    "grey_rates": Stage(
        "The grey ground CAE vs classical fills at the orbital mission's sampling rate (keep 0.02) and above",
        ((PY, "benchmarks/grey_rates.py", "--out", "{out}", "--adapt-steps", "100", "--adapt-keeps", "0.02"),),
        ((PY, "benchmarks/grey_rates.py", "--out", "{out}", "--adapt-steps", "100", "--adapt-keeps", "0.02"),),
        data=True,
    ),
    "adapt": Stage(
        "Per-frame adaptation of the ground CAEs to each image's own samples (edgeae.adapt), keep 0.1",
        (ADAPT,),
        (ADAPT,),
        data=True,
    ),
    "crosscheck": Stage(
        "The ground CAEs mixed with linear interpolation region by region by a held-out cross-check",
        (XCHECK, XCHECK_GREY),
        (XCHECK, XCHECK_GREY),
        data=True,
    ),
    "planted_blocks": Stage(
        "Planted bright / checkerboard / noise blocks in real grey frames: where each VAE score ranks them",
        ((PY, "-m", "benchmarks.planted_blocks", "--split", "val", "--out", "{out}/val"),
         (PY, "-m", "benchmarks.planted_blocks", "--split", "test", "--out", "{out}/test")),
        ((PY, "-m", "benchmarks.planted_blocks", "--split", "val", "--out", "{out}/val"),
         (PY, "-m", "benchmarks.planted_blocks", "--split", "test", "--out", "{out}/test")),
        data=True,
    ),
    "local_z_int8": Stage(
        "local z (mu, rec) from the int8 VAE vs the fp32 one: top-k overlap, with and without the resolution floor",
        ((PY, "-m", "benchmarks.local_z_int8", "--out", "{out}"),),
        ((PY, "-m", "benchmarks.local_z_int8", "--out", "{out}", "--strip", "runs/frames/nac_52224x5064.tif"),
         (PY, "-m", "benchmarks.local_z_int8", "--out", "{out}/onnx", "--runtime", "onnx", "--strip",
          "runs/frames/nac_52224x5064.tif")),
        data=True,
    ),
    "flight_planted": Stage(
        "The rover mission's flight scorer on planted MSL hardware (firmware-sim, int8), against the rover VAE",
        ((PY, "benchmarks/flight_planted.py", "--out", "{out}"),),
        ((PY, "benchmarks/flight_planted.py", "--out", "{out}", "--seeds", "8"),),
        data=True,
    ),
    "nac": Stage(
        "The lunar paper's headline: a NAC-size strip through firmware-sim and edgeae scan, scorer rates vs peak",
        ((PY, "-m", "benchmarks.nac_headline", "--out", "{out}", "--quick"),),
        ((PY, "-m", "benchmarks.nac_headline", "--out", "{out}"),),
        data=True, timed=True,
    ),
    "scan": Stage(
        "Archive scan throughput, local engine vs Ray",
        ((PY, "-m", "edgeae.scan.synth", "--out", "runs/archive-quick", "--n", "60"),
         (PY, "benchmarks/scan_throughput.py", "--archive", "runs/archive-quick", "--out", "{out}")),
        ((PY, "-m", "edgeae.scan.synth", "--out", "runs/archive", "--n", "300"),
         (PY, "benchmarks/scan_throughput.py", "--archive", "runs/archive", "--out", "{out}", "--kill-test")),
        data=True, timed=True,
    ),
}
# fmt: on


def _fill(args: Command, out: str | Path) -> list[str]:
    return [a.replace("{out}", str(out)) for a in args]


def shown_path(path: Path) -> str:
    """``path`` as commands and pages name it: relative to the repository when inside it, else absolute."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


OUTPUT_SUFFIXES = (".md", ".json", ".png")
"""The files a stage record lists: tables, results and plots (not models, frames or logs)."""


def written_since(folder: Path, t0: float) -> list[str]:
    """Paths (relative to ``folder``, sorted) of the tables, JSON and plots modified at or after ``t0`` (epoch s;
    1 s of slack for file systems with coarse timestamps)."""
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix in OUTPUT_SUFFIXES and p.is_file() and p.stat().st_mtime >= t0 - 1.0
    )


def earlier_runs(folder: Path, written: list[str], previous: dict[str, Any] | None) -> dict[str, Any]:
    """For each output in ``folder`` this run did not write: the run that did, from the stage's previous record
    (its size, date and commit; None when that record does not say)."""
    mine = set(written)
    out: dict[str, Any] = {}
    prev = previous or {}
    where = prev.get("machine") or {}
    origin = (
        {"size": prev.get("size"), "date": where.get("date"), "commit": where.get("commit"), "listed": "files" in prev}
        if prev
        else None
    )
    for rel in written_since(folder, float("-inf")):
        if rel in mine:
            continue
        # a record from before files were listed showed its whole folder: those files count as its run's
        if "files" not in prev or rel in prev["files"]:
            out[rel] = origin
        else:
            out[rel] = (prev.get("earlier") or {}).get(rel)
    return out


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file (and link) under ``folder``: relative path -> (mtime in ns, size)."""
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.rglob("*"):
        if p.is_symlink() or p.is_file():
            st = p.lstat()
            found[p.relative_to(folder).as_posix()] = (st.st_mtime_ns, st.st_size)
    return found


TEXT_SUFFIXES = (".md", ".json", ".jsonl", ".txt", ".csv", ".log")
"""Promoted files in which the staging folder's name is replaced by the published one (their own commands)."""


def promote(staging: Path, published: Path, before: dict[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
    """Move the files a run wrote in ``staging`` (new, or changed since ``before``) into ``published``, file by file,
    and delete there the files the run deleted from its copy; returns (written, deleted), relative paths. A stage
    that records its own command line (``--out <staging>``) gets the published folder named there instead: the
    staging path as the stage was given it (:func:`shown_path`) is replaced in its text files, which also turns the
    absolute form of a path inside the repository into the published one."""
    was, now_named = shown_path(staging).encode(), shown_path(published).encode()
    now = snapshot(staging)
    written = sorted(rel for rel, sig in now.items() if before.get(rel) != sig)
    deleted = sorted(rel for rel in before if rel not in now)
    for rel in deleted:
        (published / rel).unlink(missing_ok=True)
        for parent in (published / rel).parents:  # the folders the stage removed with them, when now empty
            if parent == published or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
    for rel in written:
        dst = published / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir() and not dst.is_symlink():  # a folder the stage replaced with a file
            shutil.rmtree(dst)
        os.replace(staging / rel, dst)
        if dst.suffix in TEXT_SUFFIXES and not dst.is_symlink():
            data = dst.read_bytes()
            if was in data:
                dst.write_bytes(data.replace(was, now_named))
    return written, deleted


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on ``path`` (created); yields False at once when ``wait`` is False and another
    process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update_record(out: Path, name: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> None:
    """Replace stage ``name``'s record in ``out/stages.json`` with ``change(current record)``: re-read, changed and
    renamed into place under the lock, so concurrent ``--only`` runs into one folder keep each other's records."""
    path = out / "stages.json"
    with locked(out / WORK / "stages.lock"):
        status = load_record(path, STAGES_REMEDY) if path.is_file() else {}
        status[name] = change(status.get(name))
        write_atomic(path, json.dumps(status, indent=2))


def run_command(argv: list[str], log: IO[bytes], env: dict[str, str]) -> int:
    """Run one stage command in the repository, its output (stdout and stderr together) shown and written to
    ``log``; returns its exit status. On Ctrl-C the command gets SIGINT (killed after 10 s) and this re-raises."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.stdout is None:  # for the type checker: stdout=PIPE always gives one
        raise RuntimeError("no pipe from the stage command")
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):  # what is there, at once (a tee)
            log.write(chunk)
            log.flush()
            sys.stdout.write(decode(chunk))
            sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        raise
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class StageInterrupted(Exception):
    """Ctrl-C (or the command's own SIGINT) during a stage: nothing of it was published."""

    def __init__(self, name: str, staging: Path) -> None:
        super().__init__(name)
        self.name, self.staging = name, staging


@dataclass
class Run:
    """What the stages of one invocation share."""

    out: Path
    full: bool
    only: bool  # the stages were named with --only
    where: dict[str, Any]  # the machine each record keeps
    env: dict[str, str]  # the stage commands' environment
    stopped_after: str | None = None  # Ctrl-C while this stage was being published: no further stage runs


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _good(record: dict[str, Any] | None) -> bool:
    return bool(record) and not (record or {}).get("returncode")


@contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C back while the body runs (publishing a stage: its files and record go together); the list it
    yields holds the signals that arrived meanwhile. Outside the main thread nothing can be held back."""
    got: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:  # not the main thread
        yield got
        return
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, old)


def run_stage(run: Run, name: str, stage: Stage) -> str:
    """Run one stage in its staging folder and publish it if every command succeeded. Returns what happened:
    'published', 'failed', 'skipped' (no data), 'kept' (a full-size record a quick run does not replace), 'busy'.
    Ctrl-C before it is published raises :class:`StageInterrupted`; during publishing it is held back until the
    stage is published, then ``run.stopped_after`` names the stage and no further stage runs."""
    try:
        return _run_stage(run, name, stage)
    except KeyboardInterrupt:
        raise StageInterrupted(name, run.out / WORK / "staging" / name) from None


def _run_stage(run: Run, name: str, stage: Stage) -> str:
    published = run.out / name
    size = "full" if run.full else "quick"
    if stage.data and find_data_root() is None:
        where = os.environ.get("EDGEAE_DATA") or "../shared/data"
        print(f"\n== {name}: skipped: it reads the data folder, not found at {where} (set EDGEAE_DATA or place "
              "../shared/data beside the repository); its previous record is kept", flush=True)  # fmt: skip
        return "skipped"
    status_path = run.out / "stages.json"
    prev = load_record(status_path, STAGES_REMEDY).get(name) if status_path.is_file() else None
    staging = run.out / WORK / "staging" / name
    keep_full = not run.full and _good(prev) and (prev or {}).get("size") == "full"
    if keep_full and not run.only:
        print(f"\n== {name}: kept the full-size results of {name} (give --full to replace them, or --only {name} for "
              f"a quick run into {shown_path(staging)})", flush=True)  # fmt: skip
        return "kept"
    with locked(run.out / WORK / f"{name}.lock", wait=False) as mine:
        if not mine:
            print(f"\n== {name}: not run: another `python -m benchmarks` is running it into {shown_path(run.out)}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return "busy"
        shutil.rmtree(staging, ignore_errors=True)  # a previous unpublished run's
        staging.parent.mkdir(parents=True, exist_ok=True)
        if published.is_dir():
            shutil.copytree(published, staging, symlinks=True, copy_function=shutil.copy2)
        else:
            staging.mkdir()
        before = snapshot(staging)
        logs = run.out / WORK / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        log_path = logs / f"{name}-{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z.log"
        extra: dict[str, Any] = {}
        if stage.timed:
            extra.update(_wait_for_quiet(name))
        t0 = time.perf_counter()
        load_before = [round(v, 2) for v in os.getloadavg()]
        rc = 0
        shown = []
        with open(log_path, "wb") as log:
            for cmd in stage.full if run.full else stage.quick:
                shown.append(" ".join(["python" if a == PY else a for a in _fill(cmd, shown_path(published))]))
                print(f"\n== {name}: {shown[-1]}", flush=True)
                log.write(f"== {shown[-1]}\n".encode())
                rc = run_command(_fill(cmd, shown_path(staging)), log, run.env)  # relative: cwd is ROOT
                if rc == -signal.SIGINT:
                    raise StageInterrupted(name, staging)
                if rc != 0:
                    break
        record: dict[str, Any] = {
            "title": stage.title,
            "commands": shown,
            "returncode": rc,
            "seconds": round(time.perf_counter() - t0, 1),
            "size": size,
            "load_average_before_after": [load_before, [round(v, 2) for v in os.getloadavg()]],
            "machine": run.where,
            "log": shown_path(log_path),
            **extra,
        }
        if rc != 0:
            fail = {"date": _now(), "commit": run.where.get("commit"), "size": size, "returncode": rc,
                    "commands": shown, "log": record["log"], "staging": shown_path(staging)}  # fmt: skip

            def failed(current: dict[str, Any] | None) -> dict[str, Any]:
                if _good(current):  # keep the good run's record and tables; say that the rerun failed
                    return {**(current or {}), "last_failure": fail}
                return {**record, "files": [], "earlier": earlier_runs(published, [], current),
                        "staging": shown_path(staging)}  # fmt: skip

            update_record(run.out, name, failed)
            print(f"== {name}: FAILED (exit status {rc}); its published results are unchanged; what it wrote "
                  f"is in {shown_path(staging)}, its output in {shown_path(log_path)}", file=sys.stderr,
                  flush=True)  # fmt: skip
            return "failed"
        if keep_full:
            print(f"== {name}: kept the full-size results of {name} (give --full to replace them); this quick run's "
                  f"output is in {shown_path(staging)}", flush=True)  # fmt: skip
            return "kept"
        with sigint_deferred() as held:
            written, deleted = promote(staging, published, before)
            files = [rel for rel in written if Path(rel).suffix in OUTPUT_SUFFIXES]

            def succeeded(current: dict[str, Any] | None) -> dict[str, Any]:
                return {**record, "files": files, "earlier": earlier_runs(published, files, current)}

            update_record(run.out, name, succeeded)
            shutil.rmtree(staging, ignore_errors=True)
        if held:
            run.stopped_after = name
        gone = f"; removed {len(deleted)} file(s) the stage deleted" if deleted else ""
        print(f"== {name}: published {len(written)} file(s) into {shown_path(published)}{gone}", flush=True)
        return "published"


def _wait_for_quiet(name: str) -> dict[str, Any]:
    """Before a timed stage: wait (at most QUIET_WAIT_S) for the 1-minute load to fall to LOAD_LIMIT; the record's
    ``quiet`` (what the wait saw) and, when the load stayed above it, ``under_load``."""
    load = os.getloadavg()[0]
    if load > LOAD_LIMIT:
        print(f"\n== {name}: waiting up to {QUIET_WAIT_S:.0f} s for the 1-minute load ({load:.2f}) to fall to "
              f"{LOAD_LIMIT} (a timed stage)", flush=True)  # fmt: skip
    quiet = wait_for_quiet(max_load=LOAD_LIMIT, timeout_s=QUIET_WAIT_S)
    got: dict[str, Any] = {"quiet": quiet}
    if quiet["load_at_start"] > LOAD_LIMIT:
        got["under_load"] = quiet["load_at_start"]
        print(f"== {name}: starting at 1-minute load {quiet['load_at_start']}: its timings are recorded as taken "
              "under load, not to be quoted", file=sys.stderr, flush=True)  # fmt: skip
    return got


def _out_folder(ap: argparse.ArgumentParser, out: Path, report_only: bool) -> None:
    """Refuse an --out that is a file, cannot be created, or (``report_only``) holds nothing to report."""
    if out.exists() and not out.is_dir():
        ap.error(f"--out {out} is a file, not a folder")
    if report_only:
        if not (out / "stages.json").is_file():
            ap.error(f"--out {out} holds no stages.json: nothing to report (run a stage into it first)")
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"--out {out}: cannot create the folder: {e.strerror or e}")


def unwritable(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (a probe file, removed at once), or None when it can."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None


def _epilog() -> str:
    """The stages, each with its title and the wall time of its last recorded run (benchmarks/results/stages.json)."""
    try:
        recorded = load_record(DEFAULT_OUT / "stages.json", STAGES_REMEDY)
    except RecordError:  # absent or unreadable: the list without times
        recorded = {}
    lines = ["stages (timed: waits for a quiet machine; [the size and wall time of the stage's last recorded run, "
             "from benchmarks/results/stages.json]):"]  # fmt: skip
    for name, stage in STAGES.items():
        rec = recorded.get(name) or {}
        took = f"{rec.get('size')} {rec['seconds']:.0f} s" if isinstance(rec.get("seconds"), int | float) else "no run"
        lines.append(f"  {name:<16}{'timed' if stage.timed else '':<7}{stage.title} [{took}]")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0],
                                 epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--full", action="store_true", help="full sizes (slow); replaces full-size results")
    ap.add_argument("--only", nargs="+", choices=sorted(STAGES), metavar="STAGE",
                    help="run only these stages (listed below; a name given twice runs once)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the stage outputs, stages.json and machine.json (default: this repository's "
                    "benchmarks/results, whose page is benchmarks/RESULTS.md; any other folder gets its own "
                    "RESULTS.md)")  # fmt: skip
    ap.add_argument("--report-only", action="store_true", help="only rebuild RESULTS.md from --out (runs nothing)")
    return ap


def _failed_before(status: dict[str, Any], names: list[str]) -> list[str]:
    """Stages not run by this command whose record says their last run failed."""
    return [n for n, s in status.items() if n not in names and (s.get("returncode") or s.get("last_failure"))]


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # outside a stage (its own Ctrl-C is handled there): nothing half-written
        print("\ninterrupted: no stage was running; published results are unchanged", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    # --report-only runs no stage: a stage choice or size would be silently ignored
    moot = [flag for flag, given in (("--only", args.only), ("--full", args.full)) if given]
    if args.report_only and moot:
        ap.error(f"--report-only runs no stage and rebuilds all of RESULTS.md: drop {' and '.join(moot)}")
    out = Path(os.path.abspath(args.out)) if args.out is not None else DEFAULT_OUT
    _out_folder(ap, out, args.report_only)
    # the published RESULTS.md is composed from the default folder only; a run into another --out (a check, a
    # scratch run) gets its own RESULTS.md there instead of overwriting the published one with partial results
    results_md = ROOT / "benchmarks" / "RESULTS.md" if out.resolve() == DEFAULT_OUT.resolve() else out / "RESULTS.md"
    for folder in dict.fromkeys([results_md.parent] if args.report_only else [out, results_md.parent]):
        why = unwritable(folder)
        if why:
            ap.error(f"cannot write into {folder} ({why}): give an --out you can write to")
    status_path = out / "stages.json"
    try:
        status = load_record(status_path, STAGES_REMEDY) if status_path.is_file() else {}
        if args.report_only and (out / "machine.json").is_file():
            load_record(out / "machine.json", MACHINE_REMEDY)
    except RecordError as e:
        ap.error(str(e))
    names = [] if args.report_only else list(dict.fromkeys(args.only or STAGES))
    outcomes: dict[str, str] = {}
    interrupted: StageInterrupted | None = None
    run: Run | None = None
    if names:
        machine = machine_info()  # before anything is written: the commit is the checkout's as the run found it
        # each stage keeps where it ran: machine.json is the last run's, and stages from other runs stay
        where = {k: machine[k] for k in ("date", "commit", "cpu", "logical_cores", "gpu")}
        flags = machine.get("cpu_flags") or []
        where["amx"] = "amx_tile" in flags
        where["vnni"] = "avx512_vnni" in flags or "avx_vnni" in flags  # int8 results move with it
        where["versions"] = {k: v for k, v in machine["versions"].items() if k in KEY_VERSIONS}
        where["cpu_flags"] = flags  # the SIMD level moves float results (report.simd_level)
        where["threads"] = machine.get("thread_settings") or thread_settings()
        env = {**os.environ, COMMIT_ENV: str(machine["commit"]), "PYTHONUNBUFFERED": "1"}
        if env.get("EDGEAE_DATA"):  # the stages run in the repository: a relative data path must still point there
            env["EDGEAE_DATA"] = os.path.abspath(env["EDGEAE_DATA"])
        run = Run(out=out, full=args.full, only=bool(args.only), where=where, env=env)
        try:
            for name in names:
                outcomes[name] = run_stage(run, name, STAGES[name])
                if run.stopped_after:
                    break
        except StageInterrupted as e:
            interrupted = e
        except RecordError as e:  # stages.json was damaged while this command ran
            print(f"python -m benchmarks: error: {e}", file=sys.stderr)
            return 1
        if "published" in outcomes.values():
            write_atomic(out / "machine.json", json.dumps(machine, indent=2))
    path = write_results(out, results_md, shown_path(out))
    print(f"\nwrote {shown_path(path)}")
    if interrupted is not None:
        print(f"interrupted during stage {interrupted.name}: its published results and record are unchanged "
              f"(what it wrote so far is in {shown_path(interrupted.staging)})", file=sys.stderr)  # fmt: skip
        return 130
    if run is not None and run.stopped_after:
        print(f"interrupted while stage {run.stopped_after} was being published: it was published whole; the "
              "stages after it were not run", file=sys.stderr)  # fmt: skip
        return 130
    earlier = _failed_before(load_record(status_path, STAGES_REMEDY) if status_path.is_file() else status, names)
    if earlier:
        print(f"note: the last recorded run of {', '.join(earlier)} failed (an earlier command's; see RESULTS.md)")
    if not names:
        return 0
    count = {k: sum(v == k for v in outcomes.values()) for k in ("published", "failed", "busy", "skipped", "kept")}
    print(f"{len(names)} stage(s): {count['published']} published, {count['failed'] + count['busy']} failed, "
          f"{count['skipped']} skipped without the data, {count['kept']} kept at full size")  # fmt: skip
    failed = [n for n, o in outcomes.items() if o in ("failed", "busy")]
    if failed:
        print(f"stages that failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
