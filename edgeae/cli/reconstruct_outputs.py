"""What ``edgeae reconstruct`` writes: its outputs checked before the fill (:func:`check_outputs`), what it
replaces of an earlier run (:func:`earlier_outputs`), and the rebuilt image encoded in the input's own counts
where it can be (:func:`encode_samples`, :func:`write_output`)."""

from __future__ import annotations

import argparse
import glob
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgeae.imageio import ImageData


def side_path(output: Path, value: Any, suffix: str) -> Path | None:
    if value is None:
        return None
    if value is True:
        return output.with_name(f"{output.stem}.{suffix}.png")
    return Path(value)


def finite_or_none(d: dict[str, Any]) -> dict[str, Any]:
    """JSON cannot hold inf/NaN: replace them by None (a perfect reconstruction has PSNR = inf)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def cae_tiling(predictor: Any, tile_asked: int | None, opts: dict[str, Any]) -> dict[str, Any]:
    """How :func:`edgeae.reconstruct.reconstruct_cae` tiled the image, for the metrics JSON: the tile used (a model
    with a fixed input takes its own size whatever ``--tile`` asked), the overlap (default tile / 4), the blending
    window and the tiles per batch."""
    meta = getattr(predictor, "metadata", None)
    shape = tuple(getattr(meta, "input_shape", ()))
    side = int(shape[2] if getattr(meta, "layout", "NCHW") == "NCHW" else shape[1]) if len(shape) == 4 else -1
    tile = side if side > 0 else (tile_asked or 128)
    overlap = opts.get("overlap")
    return {
        "tile": tile,
        "tile_asked": tile_asked,
        "model_input": side if side > 0 else None,
        "overlap": tile // 4 if overlap is None else int(overlap),
        "window": "hann",  # sin² per axis, sampled at pixel centres (edgeae.tiling.tile_window)
        "batch": int(opts["batch"]),
    }


def named_outputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(flag, path) of every file the command may write, the valid map left aside (known after the read)."""
    named = [
        ("-o", args.output),
        ("--save-masked", side_path(args.output, args.save_masked, "masked")),
        ("--save-error-map", side_path(args.output, args.save_error_map, "error")),
        ("--metrics-json", Path(args.metrics_json) if args.metrics_json else None),
    ]
    return [(flag, p) for flag, p in named if p is not None]


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names: a hard or symbolic link, or the same path spelt two ways."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_name_length(p: Path | None, flag: str, args: argparse.Namespace) -> None:
    """A file name longer than its folder allows (``NAME_MAX`` bytes) is refused naming ``flag``; checked before
    anything stats the path (that fails with ENAMETOOLONG)."""
    from edgeae.atomic import name_max
    from edgeae.cli import CLIError

    if p is None:
        return
    size, limit = len(os.fsencode(p.name)), name_max(p.parent)
    if size > limit:
        after_o = flag != "-o" and p.parent == args.output.parent and p.name.startswith(f"{args.output.stem}.")
        raise CLIError(
            f"{flag} {p}: the file name is {size} bytes, more than the {limit} a name may have in "
            f"{p.parent}: give a shorter name{' (it is named after -o: shorten -o)' if after_o else ''}"
        )


def check_outputs(args: argparse.Namespace, more: tuple[tuple[str, Path], ...] = ()) -> None:
    """Every file the command will write: a format it can write, not a folder, a name its folder allows (at most
    ``NAME_MAX`` bytes), none the input image (a link to it included), no two the same, a folder that can be
    written in. Each refusal names its flag."""
    from edgeae.cli import CLIError, check_writable
    from edgeae.imageio import WRITE_EXTENSIONS

    named = [*named_outputs(args), *more]
    for flag, p in named:
        if flag != "--metrics-json" and p.suffix.lower() not in WRITE_EXTENSIONS:
            raise CLIError(
                f"{flag} {p}: cannot write {p.suffix or 'no extension'!r}; use one of {', '.join(WRITE_EXTENSIONS)}"
            )
        check_name_length(p, flag, args)
        if p.is_dir():
            raise CLIError(f"{flag} {p} is a folder: name the file to write")
        if _same_file(p, args.image):
            raise CLIError(f"{flag} {p} is the input image: name another output file")
    for i, (_, a) in enumerate(named):
        if any(_same_file(a, b) for _, b in named[i + 1 :]):
            raise CLIError(f"two outputs name the same file ({', '.join(str(p) for _, p in named)}): give each its own")
    for flag, p in named:
        check_writable(p, flag)


def stale_valid_map(args: argparse.Namespace, valid_path: Path | None) -> tuple[Path | None, Path | None]:
    """(``OUTPUT.valid.png`` to remove, ``OUTPUT.valid.png`` kept because another image beside it may own it) when
    this run writes no valid map (the image has no no-data) but replaces an output an earlier run wrote one beside:
    it describes the replaced image, not the new one. (None, None) otherwise (also when it is one of this run's own
    outputs). The map's name does not say whose it is: ``STEM.png`` and ``STEM.tif`` share ``STEM.valid.png``, and
    the input may be an earlier ``-o STEM.tif``; such a map is kept and the run says so."""
    if valid_path is not None or not args.output.is_file():
        return None, None
    old = side_path(args.output, True, "valid")
    if old is None or not old.is_file() or any(_same_file(old, p) for _, p in named_outputs(args)):
        return None, None
    # STEM.png and STEM.tif share STEM.valid.png: while another STEM.<ext> image this command may have written is
    # beside it (not this run's own outputs; the input may be one: an earlier -o STEM.tif), the map may be that one's
    from edgeae.imageio import WRITE_EXTENSIONS

    ours = [p for _, p in named_outputs(args)]
    for q in args.output.parent.glob(glob.escape(args.output.stem) + ".*"):
        if q.name != args.output.stem + q.suffix or q.suffix.lower() not in WRITE_EXTENSIONS or not q.is_file():
            continue
        if not any(_same_file(q, p) for p in ours):
            return None, old
    return old, None


def encode_samples(data: ImageData, image: np.ndarray, path: Path) -> tuple[np.ndarray, int, dict[str, Any]]:
    """What to write for ``image`` (float32 (H, W, C) in [0, 1], like ``data.pixels``) at ``path``: the samples,
    their bit depth and how they map back to the input's values (for the metrics JSON).

    8-bit input: 8-bit samples, the input's values. Integer input of 9-16 bits whose values fit 0-65535: 16-bit
    samples at full scale, v = round(pixels × 65535), from which the input's counts come back exactly,
    raw = round(v × scale / 65535) + raw_lo (``ImageData.scale``, ``extra["scaling"]``): kept samples are
    recoverable bit for bit, and the file reads back as the same image (its own counts in a 16-bit file would read
    back 16× darker: a PNG/PGM written by OpenCV cannot say it holds 12 bits). Anything else (float, signed below
    0, 32-bit): v of the [0, 1] scale, raw ≈ raw_lo + v / 65535 × (raw_hi - raw_lo). JPEG holds 8 bits only.
    Declared no-data pixels are written as 0."""
    scaling = data.extra.get("scaling") or {}
    lo = float(scaling.get("raw_lo", 0.0))
    hi = float(scaling.get("raw_hi", lo + data.scale))
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    exact = (
        not jpeg
        and np.dtype(data.raw_dtype).kind in "ui"
        and 8 < data.bit_depth <= 16
        and lo >= 0
        and lo.is_integer()
        and float(data.scale).is_integer()
        and data.scale <= 65535
    )
    bits = 8 if jpeg or data.bit_depth <= 8 else 16
    top = 2**bits - 1
    image = np.asarray(image)
    out: np.ndarray = np.empty(image.shape, np.uint8 if bits == 8 else np.uint16)
    rows = max(1, (1 << 20) // max(1, image[0].size))  # in row bands: no whole-image float64 copy
    for r0 in range(0, image.shape[0], rows):
        px = np.clip(np.nan_to_num(image[r0 : r0 + rows].astype(np.float32), nan=0.0), 0.0, 1.0)
        out[r0 : r0 + rows] = np.rint(px.astype(np.float64) * top)
    rule: dict[str, Any]
    if exact:
        rule = {"rule": f"raw = round(v * scale / {top}) + raw_lo (exact)", "scale": data.scale, "raw_lo": lo}
    else:
        rule = {"rule": f"raw = raw_lo + v / {top} * (raw_hi - raw_lo)", "raw_lo": lo, "raw_hi": hi}
    has_data = data.extra.get("declared_valid", data.valid)
    if not has_data.all():
        out[~has_data] = 0
    return out, bits, {"bits": bits, **rule, "nodata_written_as": None if has_data.all() else 0}


def keep_georef(path: Path, georef: Any, nodata_zero: bool = False) -> bool:
    """Stamp a map-projected product's CRS and transform on a TIFF output (other formats cannot hold them), and
    declare 0 as its no-data value where ``nodata_zero`` (no pixel with data was written as 0)."""
    if not georef or path.suffix.lower() not in (".tif", ".tiff"):
        return False
    from edgeae.archive.geo import stamp_georef

    stamped = stamp_georef(path, georef)
    if stamped and nodata_zero:
        import rasterio

        with rasterio.Env(), rasterio.open(os.fspath(path), "r+") as dst:
            dst.nodata = 0
    return stamped


def write_output(path: Path, data: ImageData, image: np.ndarray, georef: Any, lossy: list[str]) -> dict[str, Any]:
    """Write ``image`` as :func:`encode_samples` says; return its record. A JPEG is noted as lossy once."""
    from edgeae.imageio import write_image

    samples, bits, record = encode_samples(data, image, path)
    write_image(path, samples, bit_depth=bits)
    has_data = data.extra.get("declared_valid", data.valid)
    nodata_zero = not has_data.all() and not bool((samples[has_data] == 0).any())
    georef_kept = keep_georef(path, georef, nodata_zero)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        deeper = f"; the {data.bit_depth}-bit image is written at 8 bits" if data.bit_depth > 8 else ""
        lossy.append(
            f"{path.name}: JPEG is lossy, its samples (the kept ones too) differ from the rebuilt image's{deeper}"
        )
    return {**record, "path": str(path), "georef": georef_kept, "nodata_tag": georef_kept and nodata_zero}


def earlier_outputs(args: argparse.Namespace, masked: Path | None, error: Path | None) -> str:
    """What this run replaces of an earlier one (-o, --metrics-json), and the extras an earlier run left beside
    -o under their default names (``OUTPUT.masked.png``, ``OUTPUT.error.png``) that this run does not write: kept,
    but named (they are not of this run's image). "" when there is none."""
    gone = [str(p) for p in (args.output, args.metrics_json) if p is not None and _is_file(Path(p))]
    text = f"replaced {' and '.join(gone)} of an earlier run" if gone else ""
    left = [
        f"{old} ({flag})"
        for flag, mine, old in (
            ("--save-masked", masked, side_path(args.output, True, "masked")),
            ("--save-error-map", error, side_path(args.output, True, "error")),
        )
        if old is not None and _is_file(old) and (mine is None or mine.resolve() != old.resolve())
    ]
    if left:
        text += (
            "; " if text else ""
        ) + f"kept {' and '.join(left)}: left by an earlier run (this run does not write it)"
    return text


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False for a name its folder cannot hold (a side file named after a long -o)."""
    try:
        return p.is_file()
    except OSError:
        return False
