"""What ``edgeae score`` writes: its output paths (checked before any work), the ``--map`` of each image, the CSV
with its settings JSON, and the highest-scoring patches printed after the summary line."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError, check_writable, err_line
from edgeae.printable import printable

log = logging.getLogger("edgeae.cli.score")  # the command's logger, as before these helpers left edgeae.cli.score
# what the CSV's score column is, per --score (a CAE scores with its masked error): the maps and the settings JSON
SCORE_MEANING = {
    "a": "a(x) = ||x - x_hat||^2 + λ||μ||^2",
    "terms-max": "terms-max: the larger term over its image median",
    "frame-z-knn": "frame-z-knn: kNN distance of per-image z latents",
    "local-z": "local-z: novelty against the patches around it",
    "context-knn": "context-knn: kNN distance in image and product",
    "cae": "CAE masked-reconstruction error",
}

MAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".tif", ".tiff")
MAP_STEM_TAG = "_<stem>"  # the settings JSON's "map" with several images: OUT_<stem>.png, the pattern of their names


def _map_paths(base: str, images: list[Path]) -> list[Path]:
    """Where each image's ``--map`` goes: BASE itself for one image, else BASE_<stem> per image, numbered when
    two images share a stem (so no map overwrites another)."""
    b = Path(base)
    b = b if b.suffix else b.with_suffix(".png")
    if len(images) == 1:
        return [b]
    stems = [f.stem for f in images]
    tags = (
        stems if len(set(stems)) == len(stems) else [f"{i:0{len(str(len(stems)))}d}_{s}" for i, s in enumerate(stems)]
    )
    return [b.with_name(f"{b.stem}_{t}{b.suffix}") for t in tags]


def _check_outputs(args: argparse.Namespace, files: list[Path]) -> list[Path]:
    """Refuse, before any work, a CSV that is not a .csv, a bad --map suffix, and outputs (the CSV, its settings
    JSON, every image's map) that resolve to an input or to each other; make sure their folders can be written.
    Returns the map path of each image (empty without --map)."""
    from edgeae.anomaly.score import settings_path

    out = Path(args.output)
    if out.is_dir():
        raise CLIError(f"-o {args.output} is a directory; name the CSV file to write")
    if out.suffix.lower() != ".csv":
        raise CLIError(f"-o {args.output}: the scores are CSV; name a .csv file (e.g. scores.csv)")
    if args.map and Path(args.map).suffix.lower() not in (*MAP_SUFFIXES, ""):
        raise CLIError(f"--map {args.map}: write one of {', '.join(MAP_SUFFIXES)} (.tif: a float GeoTIFF)")
    maps = _map_paths(args.map, files) if args.map else []
    outputs = [("-o", out), ("-o (its settings)", Path(settings_path(out)))] + [("--map", m) for m in maps]
    seen: dict[Path, tuple[str, Path]] = {f.resolve(): ("input image", f) for f in files}
    for flag, path in outputs:
        key = path.resolve()
        if key in seen:
            what, other = seen[key]
            raise CLIError(f"{flag} {path} is the {what} {other}: it would be overwritten; name another file")
        seen[key] = (f"{flag} output", path)
    for flag, target in [("-o", out)] + ([("--map", maps[0])] if maps else []):
        check_writable(target, flag)  # before the scoring, not after
    return maps


def _replace_earlier(args: argparse.Namespace, maps: list[Path], files: list[Path]) -> tuple[list[Path], str]:
    """What this run replaces of an earlier one: the maps that run's JSON lists (``maps``) which this run does not
    write again, and the note that says so ("" when there was no earlier run). Only a file named as that run's
    ``--map`` names them, in the folder of -o (or below it), a plain file (not a link) and never an input, is
    removed: a JSON copied with its folder, or edited by hand, cannot point the removal anywhere else (a listed map
    elsewhere stays, and the note says so). Nothing is removed here: :func:`_remove_earlier`, once this run's
    outputs are written (a run that fails leaves the earlier one whole: its CSV and JSON still list maps that
    exist)."""
    import json

    from edgeae.anomaly.score import settings_path

    out, js = Path(args.output), Path(settings_path(args.output))
    if not (out.exists() or js.exists()):
        return [], ""
    try:
        earlier = json.loads(js.read_text())
    except (OSError, ValueError):
        earlier = {}
    listed = earlier.get("maps") if isinstance(earlier, dict) else None
    base = earlier.get("map") if isinstance(earlier, dict) else None
    keep = {m.resolve() for m in maps} | {f.resolve() for f in files} | {out.resolve(), js.resolve()}
    folder = js.parent.resolve()
    stale: list[Path] = []
    outside: list[Path] = []
    if isinstance(listed, list) and isinstance(base, str):
        b = Path(base).name.replace(MAP_STEM_TAG, "")  # "m_<stem>.png" (several images) or "m.png" (one)
        b_stem = Path(b).stem
        for name in listed:
            m = js.parent / name if isinstance(name, str) else None  # relative to the JSON (older: absolute)
            try:
                if m is None or m.suffix.lower() not in MAP_SUFFIXES or m.is_symlink() or not m.is_file():
                    continue
            except (OSError, ValueError):  # a name no folder can hold, a NUL byte: not a map this command wrote
                continue
            if m.resolve() in keep or not (m.stem == b_stem or m.stem.startswith(b_stem + "_")):
                continue  # this run's own output, an input, or not a name that run's --map gave (_map_paths)
            (stale if m.resolve().is_relative_to(folder) else outside).append(m)
    what = " and ".join(str(p) for p in (out, js) if p.exists())
    note = f"replaced {what} of an earlier run"
    if stale:
        note += f"; removed its {len(stale)} map(s) this run does not write: " + ", ".join(p.name for p in stale)
    elif not isinstance(listed, list):
        note += " (its settings list no maps: any maps it wrote stay)"
    if outside:
        note += (
            f"; kept {len(outside)} map(s) its settings list outside {js.parent} (only maps in the folder of -o are "
            "removed): " + ", ".join(str(p) for p in outside)
        )
    return stale, note


def _remove_earlier(stale: list[Path], note: str) -> None:
    """After this run's outputs are written: remove the earlier run's maps it does not write again, and say so."""
    for m in stale:
        m.unlink(missing_ok=True)
    if note:
        err_line(printable(note))  # after the outputs: a stderr that fails (a full disk) does not change the status


def _recorded_paths(args: argparse.Namespace, maps: list[Path]) -> dict[str, Any]:
    """The settings JSON's paths of the maps, relative to the JSON's folder (so that a results folder copied or
    moved whole still names its own files): ``map``, the file of one image or the ``<stem>`` pattern of several
    (``m_<stem>.png``), and ``maps``, the files written."""
    import os

    from edgeae.anomaly.score import settings_path

    folder = Path(settings_path(args.output)).absolute().parent

    def rel(p: Path) -> str:
        return Path(os.path.relpath(p.absolute(), folder)).as_posix()

    if not args.map:
        return {"map": None, "maps": []}
    if len(maps) == 1 and maps[0] == _map_paths(args.map, [Path("one")])[0]:
        return {"map": rel(maps[0]), "maps": [rel(maps[0])]}
    b = _map_paths(args.map, [Path("one")])[0]
    return {"map": rel(b.with_name(f"{b.stem}{MAP_STEM_TAG}{b.suffix}")), "maps": [rel(m) for m in maps]}


def _write_maps(files: list[Path], results: list[Any], maps: list[Path], kind: str, threshold: Any) -> None:
    """Each image's ``--map``: a float GeoTIFF (.tif) or a picture titled with what the score is (``kind``: the
    --score, or "cae")."""
    meaning, label = SCORE_MEANING[kind], {"a": "a(x)", "cae": "CAE masked error"}.get(kind, kind) + " score"
    for f, r, where in zip(files, results, maps, strict=False):
        if where.suffix.lower() in (".tif", ".tiff"):
            from edgeae.scan.geo import save_score_geotiff

            out = save_score_geotiff(where, r, f)
        else:
            from edgeae.anomaly.plots import save_score_map

            out = save_score_map(
                where, r, image=_backdrop(f, r), threshold=threshold, title=f"{f.name}\nscore: {meaning}",
                score_label=label, image_downsampled=True,
            )  # fmt: skip
        log.info("map -> %s", printable(str(out)))


def _backdrop(path: Path, scores: Any) -> Any:
    """The image beside its map, every d-th pixel as the map draws it (:func:`edgeae.strips.preview`, a strip at a
    time), or None when it cannot be read now (the map is then drawn alone; until session 46 it always was)."""
    import logging

    from edgeae.anomaly.plots import map_step
    from edgeae.strips import preview

    step = map_step(scores.shape)  # the map's own step: the two panels line up
    quiet = logging.getLogger("edgeae.row_bands")  # its mosaic warning was said when the image was scored
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return preview(path, step)
    except Exception as exc:  # a display only: the scores and the map are written either way
        log.debug("no backdrop for the map of %s: %s", printable(str(path)), exc)
        return None
    finally:
        quiet.setLevel(level)


def _write_csv(
    args: argparse.Namespace,
    results: list[Any],
    unread: list[str],
    meta: Any,
    kind: str,
    patch: int,
    stride: int,
    threshold: float | None = None,
    maps: list[Path] | None = None,
) -> int:
    """The scores CSV (with map columns when any image is map-projected, even one with no scored patch) and the
    settings JSON beside it (with the threshold the maps outline patches above, and the maps written, which the
    next run into the same CSV removes when it does not write them again); returns the rows written."""
    from edgeae.anomaly.score import write_csv, write_settings
    from edgeae.scan.geo import write_scores_csv

    n = write_scores_csv(args.output, results)
    if n is None:  # no image is map-projected
        n = write_csv(args.output, results)
    settings = {
        "model": args.model, "model_kind": meta.kind, "model_channels": meta.channels,
        "score": kind, "score_meaning": SCORE_MEANING[kind],
        "patch": patch, "stride": stride, "x_y": "top-left pixel of the patch in the full image",
        "min_valid": args.min_valid, "views": args.views, "group": args.group, "bayer": args.bayer,
        "margin": args.margin, "cae_keep": args.cae_keep if meta.kind == "cae" else None,
        "cae_seed": args.cae_seed if meta.kind == "cae" else None,
        "images": [r.file for r in results], "skipped": unread, "patches": n,
        "images_resolved": [str(Path(r.file).resolve()) for r in results],
        "threshold": threshold, "threshold_meaning": None if threshold is None else
        "the model's calibrated a(x) threshold: the maps outline in cyan the patches that score above it",
        **_recorded_paths(args, maps or []),
        # per image (the order of "images"): grid patches not scored, their valid fraction under min_valid
        "below_min_valid": _below_min_valid(results, patch, stride),
    }  # fmt: skip
    settings["patches_below_min_valid"] = sum(settings["below_min_valid"])
    write_settings(args.output, settings)
    return n


def _below_min_valid(results: list[Any], patch: int, stride: int) -> list[int]:
    """Per image, the patches of its grid (:func:`edgeae.tiling.tile_positions`, what ``score_file`` visits) that
    were not scored: their valid fraction was under ``--min-valid``."""
    from edgeae.tiling import axis_count

    return [axis_count(r.shape[0], patch, stride) * axis_count(r.shape[1], patch, stride) - len(r) for r in results]


SHOW_TOP = 5  # the highest-scoring patches printed after the summary line (all of them are in the CSV)


def _print_top(results: list[Any], k: int) -> None:
    """The ``k`` highest-scoring patches over every image (ties by image order, y, x), one line each."""
    import numpy as np

    scored = [(i, r) for i, r in enumerate(results) if len(r.score)]
    if not scored or k <= 0:
        return
    score = np.concatenate([np.asarray(r.score, np.float64) for _, r in scored])
    img = np.concatenate([np.full(len(r.score), i) for i, r in scored])
    ys = np.concatenate([np.asarray(r.y) for _, r in scored])
    xs = np.concatenate([np.asarray(r.x) for _, r in scored])
    order = np.lexsort((xs, ys, img, -score))[:k]
    names = _display_names([r.file for r in results])
    width = max(len(names[i]) for i in img[order])
    print(f"highest {len(order)} of {len(score)}:")
    for rank, j in enumerate(order, 1):
        print(f"  {rank}. {names[img[j]]:<{width}}  x={xs[j]:<6d} y={ys[j]:<6d} score {score[j]:.6g}")


def _display_names(files: list[str]) -> list[str]:
    """Each file's name for the terminal: its file name, or the path as given where two files share a name; bytes
    that are not UTF-8 as ``\\xfe`` (:func:`edgeae.printable.printable`: a strict stdout fails on them)."""
    base = [Path(f).name for f in files]
    return [printable(f if base.count(b) > 1 else b) for f, b in zip(files, base, strict=True)]
