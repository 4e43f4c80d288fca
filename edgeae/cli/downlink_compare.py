"""``edgeae downlink simulate --compare``: the sparse frame rebuilt on the ground next to each codec at the same
wire bytes over the same link, and its table (the comparison side of :mod:`edgeae.cli.downlink`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

DEFAULT_FILL = "blend"
"""The classical fill --compare rebuilds with when no --model or --fill is given: the best of the reconstruction
benchmark (until session 44 Telea, the weakest of them on the rover test images)."""


def compare_filler(model: str | None, channels: int | None = None, fill: str | None = None):
    """(fill, name) that rebuilds the sparse frame for --compare: the CAE ``model``, else the classical ``fill``
    (``edgeae.inpaint.METHODS``; None: :data:`DEFAULT_FILL`). A model that is not a CAE, or (``channels``: the
    frame's) takes another channel count, is refused (ValueError) before any work, not reported as a frame the ground
    could not rebuild."""
    from edgeae.ground.station import make_filler
    from edgeae.predictor import load_predictor

    if not model:
        return make_filler(None, fill or DEFAULT_FILL)
    predictor = load_predictor(model)  # loaded once: the filler fills with it, its metadata gives the channels
    filler = make_filler(model, predictor=predictor)  # refuses a VAE or a CAE half by its kind
    if channels is not None:
        takes = getattr(getattr(predictor, "metadata", None), "channels", channels)
        if takes != channels:
            raise ValueError(
                f"--model {model} takes {takes} channel(s), the --image frame has {channels}: name a "
                f"{channels}-channel CAE, or give --channels {takes} to convert the image"
            )
    return filler


class StepBar:
    """A progress bar over ``total`` named steps (``bar(name)`` starts the next one), drawn when ``on`` and stderr
    is a terminal, as the other commands' bars; a context manager that closes it."""

    def __init__(self, total: int, on: bool = True) -> None:
        from edgeae.reconstruct import show_progress

        self.bar = None
        if show_progress(on, total, more_than=0):
            from edgeae._optional import require

            self.bar = require("tqdm").tqdm(total=total, unit="step", desc="--compare")
        self.started = 0

    def __call__(self, name: str) -> None:
        if self.bar is not None:
            if self.started:
                self.bar.update(1)
            self.bar.set_description(name)
        self.started += 1

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.update(max(0, self.started - self.bar.n))
            self.bar.close()


def strict_json(obj: Any) -> str:
    """Strict JSON (a non-finite number as null, not ``Infinity``/``NaN``), as the ground station writes it."""
    from edgeae.ground.station import strict_json

    return strict_json(obj)


def compare(
    args: argparse.Namespace,
    codecs: list[str],
    filler,
    samples,
    bits: int,
    received,
    wire_bytes: int,
    link,
    valid=None,
    step: Callable[[str], None] | None = None,
) -> list[dict]:
    """The sparse frame rebuilt on the ground, and each codec at the same wire bytes over the same link. A lost
    frame (sparse or codec) has ``psnr`` None and ``lost`` True; one the ground received but could not rebuild has
    ``error`` (its reason) and ``lost`` False; one identical to the original has ``identical``
    True and ``psnr`` the ground station's cap (``PSNR_CAP_DB``, 120 dB: its PSNR is infinite, which JSON cannot
    hold), as the ground station's own reports give it. Every row is scored against the real original on its own
    scale (``2**bits - 1``); JPEG 2000 and JPEG XL code a 12- or 16-bit frame as it is, JPEG and WebP an 8-bit copy
    (each row's ``input``).

    ``valid`` (bool (H, W), :func:`edgeae.ground.validity.file_valid`): every row's PSNR over those pixels only,
    the rule ``edgeae reconstruct`` scores with (each row's ``psnr_over`` says which); None: over every pixel.
    ``step``: called with the name of each step before it runs (the ground rebuild, each codec's rate search).
    """
    from edgeae.ground.sources import as_float
    from edgeae.ground.station import PSNR_CAP_DB, GroundStation
    from edgeae.ground.validity import coverage, mark_no_data

    fill, name = filler
    step = step or (lambda _: None)
    step(f"rebuilding the sparse frame ({name})")
    original = mark_no_data(as_float(samples, bits), valid)
    gs = GroundStation(fill=fill, fill_name=name, originals={args.frame_id: original})
    for _, p in received:
        gs.receive(p)
    rep = gs.finish()["products"].get(f"frame_{args.frame_id}", {})
    sparse = {"method": f"sparse keep {args.keep} + {name}", "input": f"{bits}-bit", "wire_bytes": wire_bytes}
    if "error" in rep:  # the ground could not rebuild the frame: its reason, not "lost" (it arrived)
        rows: list[dict[str, Any]] = [{**sparse, "psnr": None, "lost": False, "error": f"not rebuilt: {rep['error']}"}]
    else:
        rows = [
            {
                **sparse,
                "psnr": rep.get("psnr"),
                "lost": "psnr" not in rep,
                "longest_row_gap": rep.get("longest_row_gap"),
            }
        ]
    if "psnr_note" in rep:  # the station's exact rebuild: PSNR reported at its cap
        rows[0]["psnr"], rows[0]["identical"] = PSNR_CAP_DB, True
    over = coverage(valid) if valid is not None else f"all {samples.shape[0] * samples.shape[1]:,} pixels"
    rows[0]["psnr_over"] = rep.get("psnr_over", over)
    for codec in codecs:
        step(f"{codec}: the best quality within {wire_bytes:,} wire bytes")
        got = same_bytes_over(samples, codec, wire_bytes, link, args.max_packet, bits, valid,
                              getattr(args, "j2k_tile", None))  # fmt: skip
        rows += [{**r, "psnr_over": over} for r in got]
    for r in rows[1:]:
        if isinstance(r.get("psnr"), float) and math.isinf(r["psnr"]):
            r["psnr"], r["identical"] = PSNR_CAP_DB, True
    return rows


def same_bytes_over(
    samples, codec: str, wire_bytes: int, link, max_packet: int, bits: int, valid=None, tile: int | None = None
) -> list[dict[str, Any]]:
    """``edgeae.ground.baselines.same_bytes`` of one codec, its PSNR over the ``valid`` pixels only (None: every
    pixel): the codecs' rows scored as the sparse frame's. ``tile``: j2k-tiled's tile side (``--j2k-tile``; None: a
    tile per packet)."""
    from edgeae.ground import baselines

    return baselines.same_bytes(samples, [codec], wire_bytes, link, max_packet, bits, valid=valid, tile=tile)


def compare_table(rows: list[dict]) -> str:
    """The --compare rows as a markdown table, with what its byte counts and PSNR measure below it."""
    lines = ["| method | input | wire bytes | file bytes | PSNR (dB) | decoded |", "|---|---|---|---|---|---|"]
    for r in rows:
        what = r.get("input", "")
        if "error" in r:
            lines.append(f"| {r['method']} | {what} | - | - | - | {r['error']} |")
            continue
        if r.get("identical"):
            p = "identical"
        else:
            p = "lost" if r.get("lost") or r.get("psnr") is None else f"{r['psnr']:.2f}"
        file_bytes = f"{r['file_bytes']:,}" if "file_bytes" in r else "-"
        lines.append(f"| {r['method']} | {what} | {r['wire_bytes']:,} | {file_bytes} | {p} | {r.get('decoded', '')} |")
    bits = str(rows[0].get("input", "")) if rows else ""
    lines += [
        "",
        "wire bytes: the packets on the link, headers included (each codec gets at most the sparse frame's); file "
        "bytes: the codec's file alone (its budget: the wire bytes less its packet headers).",
        f"PSNR: against the original{f' ({bits} samples)' if bits else ''} on its own scale, over "
        f"{rows[0].get('psnr_over', 'every pixel') if rows else 'every pixel'} (every row alike); input: what the "
        "codec coded (an 8-bit codec gets an 8-bit copy of a deeper frame, its rounding counted in its PSNR).",
    ]
    return "\n".join(lines)
