"""The input checks ``edgeae score`` makes before scoring: the zoo model chosen by the first image, images whose
channels differ from the model's, ``--group`` product labels, and the size bounds of the rankings that hold
every patch's latents (``--score frame-z-knn``, ``context-knn``, ``local-z``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError
from edgeae.cli.score_outputs import _display_names
from edgeae.printable import printable

log = logging.getLogger("edgeae.cli.score")  # the command's logger, as before these helpers left edgeae.cli.score
DEFAULT_MODELS = {1: "orbital-gray-vae", 3: "rover-rgb-vae"}  # by the first image's channels (--model not given)


def _groups(files: list[Path], pattern: str) -> list[str]:
    """Each file's product label for ``--group``: the first match of ``pattern`` in its name."""
    from edgeae.anomaly.labels import group_label

    try:
        return [group_label(f.name, pattern) for f in files]
    except ValueError as exc:
        raise CLIError(f"--{exc}" if str(exc).startswith("group ") else str(exc)) from None


def _warn_channels(files: list[Path], channels: int, args: argparse.Namespace, chosen_by: Path | None) -> None:
    """Warn (one line) when some images have other channels than the model: a grey model scores colour images as
    grey (their channels averaged), a colour one grey images copied to R, G, B (headers only; ``--bayer`` mosaics
    are colour; an unreadable header is left to the reader's own error). ``chosen_by``: the image that chose the
    model (no --model), else None."""
    from edgeae.imageio import image_shape

    odd = []
    for f in files:
        try:
            colour = bool(args.bayer) or image_shape(f)[2] >= 3
        except Exception:
            continue
        if colour != (channels >= 3):
            odd.append(f)
    if not odd:
        return
    names = ", ".join(_display_names([str(f) for f in odd][:5])) + (", ..." if len(odd) > 5 else "")
    what, model_is, done, other = (
        ("colour (3 channels)", "grey", "scored as grey (channels averaged)", DEFAULT_MODELS[3])
        if channels < 3
        else ("grey", "colour", "scored with the grey copied to R, G, B", DEFAULT_MODELS[1])
    )
    chosen = f" (no --model: chosen by the first readable image, {printable(chosen_by.name)})" if chosen_by else ""
    one = len(odd) == 1
    log.warning(
        "%d of %d images %s %s and the model %s is %s%s; %s %s (for %s: --model %s): %s",
        len(odd), len(files), "is" if one else "are", what, args.model, model_is, chosen, "it is" if one else
        "they are", done, "it" if one else "them", other, names,
    )  # fmt: skip


def _header_patches(path: Path, patch: int, stride: int) -> int | None:
    """How many patches ``path`` gives on the scoring grid, from its header (None when the header cannot be read
    here: the reader's own error comes later). Counted, not listed: a 70-byte PNG may claim 2**31 pixels a side
    (until session 39 the list of every position took all the memory before the bounds it feeds could refuse it)."""
    from edgeae.imageio import image_shape
    from edgeae.tiling import axis_count

    try:
        h, w, _ = image_shape(path)
    except Exception:
        return None
    return axis_count(h, patch, stride) * axis_count(w, patch, stride)


def _check_set_size(files: list[Path], meta: Any, patch: int, stride: int, views: int, score: str) -> None:
    """CLIError before scoring when a ranking of the whole set (``frame-z-knn``, ``context-knn``) would hold more
    patches than the kNN accepts (:data:`edgeae.anomaly.baselines.KNN_MAX`: it also bounds the scaled copies of the
    latents the ranking makes) or more latents than :data:`edgeae.anomaly.context.LOCAL_Z_MAX_BYTES` (header sizes;
    an unreadable header is left to the reader's own error)."""
    from edgeae.anomaly.baselines import KNN_MAX
    from edgeae.anomaly.context import LOCAL_Z_MAX_BYTES

    latent = int((meta.architecture or {}).get("latent", 0) or 0)
    counts = [_header_patches(f, patch, stride) or 0 for f in files]
    n = sum(counts)
    nbytes = n * views * latent * 4
    if n > KNN_MAX or nbytes > LOCAL_Z_MAX_BYTES:
        raise CLIError(
            f"--score {score} ranks every patch of the {len(files)} images together: they give {n:,} patches "
            f"({nbytes / 2**20:,.0f} MiB of latents with --views {views}), over the limit of {KNN_MAX:,} patches and "
            f"{LOCAL_Z_MAX_BYTES >> 20} MiB{_alone_over(files, counts, views * latent * 4)}: use a larger --stride, "
            "fewer views or fewer images per run"
        )


def _alone_over(files: list[Path], counts: list[int], per_patch: int) -> str:
    """``; NAME alone declares HxW pixels (N patches)`` for the image of the most patches when it alone is over the
    set's bounds (a hostile header, or an image to score alone with another score), else ''."""
    from edgeae.anomaly.baselines import KNN_MAX
    from edgeae.anomaly.context import LOCAL_Z_MAX_BYTES
    from edgeae.imageio import image_shape

    top = max(range(len(files)), key=counts.__getitem__)
    if len(files) < 2 or (counts[top] <= KNN_MAX and counts[top] * per_patch <= LOCAL_Z_MAX_BYTES):
        return ""
    h, w, _ = image_shape(files[top])
    name = _display_names([str(f) for f in files])[top]
    return f"; {name} alone declares {w}x{h} pixels ({counts[top]:,} patches)"


def _check_local_z_size(path: Path, meta: Any, patch: int, stride: int) -> None:
    """CLIError before scoring when ``path``'s local-z latents would pass the limit (header size; an unreadable
    header is left to the reader's own error)."""
    from edgeae.anomaly.context import check_local_z_size, local_z_bytes

    latent = int((meta.architecture or {}).get("latent", 0) or 0)
    n = _header_patches(path, patch, stride)
    if n is None:
        return
    try:
        check_local_z_size(str(path), local_z_bytes(n, latent))
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _default_model(files: list[Path], bayer: str | None) -> tuple[str, Path]:
    """The zoo VAE for the first of ``files`` whose header can be read here, and that file: the RGB rover VAE for a
    colour image (or a raw colour mosaic), else the grey orbital one (also when no header can be read: the reader's
    own errors come later). A truncated or unreadable first file does not choose the model for the rest (until
    session 46 a truncated colour PNG first made every colour image after it score with the grey model)."""
    if bayer:
        return DEFAULT_MODELS[3], files[0]
    from edgeae.archive.formats import is_archive_path
    from edgeae.imageio import image_shape

    for f in files:
        if is_archive_path(f):  # a planetary product: the orbital model, as the help and edgeae scan say
            return DEFAULT_MODELS[1], f
        try:
            channels = image_shape(f)[2]
        except Exception:
            continue
        return (DEFAULT_MODELS[3] if channels >= 3 else DEFAULT_MODELS[1]), f
    return DEFAULT_MODELS[1], files[0]


def _no_valid_pixel(path: Path, patch: int, stride: int, channels: int, bayer: str | None, margin: Any) -> str | None:
    """Why no patch of ``path`` holds a valid pixel (:func:`edgeae.scan.blank.blank_kind`): ``"declared"`` (all NaN,
    all no-data per its label: no ``--min-valid`` makes it worth scoring), ``"dark"`` (dark throughout, read as a
    no-data margin: ``--min-valid 0`` scores it), None (some patch does, or it cannot be read). Asked only of an image
    of which no patch was scored; reads it again, up to its first valid pixel."""
    from edgeae.scan.blank import blank_kind

    return blank_kind(path, patch, stride, channels=channels, bayer=bayer, margin=margin)
