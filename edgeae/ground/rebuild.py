"""How the ground station rebuilds one product from its assembled pieces: a sparse frame (its samples, the
anomaly patches of the frame that arrived, the fill), a latent frame (the decoder), an anomaly patch or a telemetry
record, into the product's report and images. Functions over the :class:`~.station.GroundStation` that holds the
products (its methods call these)."""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from .decode import (
    LATENT_PATCH_REASON,
    DecodeError,
    NothingReceived,
    check_sparse,
    coverage,
    decode_flat,
    longest_row_gap,
    paste_patches,
    patch_unusable,
    place_sparse,
    telemetry_json,
)
from .filler import AutoChoice, AutoFill
from .latent import rebuild_latent
from .limits import GroundLimits, check_memory
from .outputs import NAMES_LISTED, image_ext, patch_images, sample_scaling
from .reassembly import Assembly

if TYPE_CHECKING:
    from .station import GroundStation

log = logging.getLogger("edgeae.ground.station")  # the station's logger, as before this module was split off


def decode_one(station: GroundStation, asm: Assembly, rep: dict) -> dict:
    """Rebuild one product into ``rep`` (its report so far): a sparse or latent frame, an anomaly patch or a
    telemetry record (:meth:`~.station.GroundStation.decode` counts and writes the report)."""
    if asm.kind == "sparse":
        rep.update(station._sparse(asm))
    elif asm.kind == "latent":
        rep.update(station._latent(asm))
    else:
        res = decode_flat(asm, station.limits)
        rep["elements_received"] = float(res.received.mean()) if res.received.size else 1.0
        rep.update(coverage(asm, res))
        if asm.kind == "telemetry":
            nonfinite: list[str] = []
            rep["telemetry"] = telemetry_json(res, nonfinite)
            if nonfinite:  # NaN / Infinity in the record: JSON cannot hold them, so null, and said where
                rep["telemetry_nonfinite"] = nonfinite
            if rep["telemetry"] is None:  # say why, not just null
                rep["telemetry_error"] = (
                    "the record is not UTF-8 JSON"
                    if res.received.all()
                    else rep["coverage_note"]
                    if "elements_not_covered" in rep
                    else "bytes missing (packets lost)"
                )
        else:
            rep.update(x=res.header["x"], y=res.header["y"], size=res.header["size"])
            station._check_patch_in_frame(asm.frame_id, res.header)
            if not math.isfinite(res.header["score"]):  # the sender refuses these: a damaged or rogue product
                raise DecodeError(
                    f"patch {asm.frame_id}/{res.header['index']}: anomaly score {res.header['score']} is not "
                    "finite (a flight product always has a finite score): patch not written"
                )
            rep["score"] = res.header["score"]
            images, written = patch_images(asm.frame_id, res.header, res.values, res.received)
            rep.update(written)
            station._write_images(images)
    return rep


def rebuild_sparse(station: GroundStation, asm: Assembly) -> dict:
    """A sparse frame's report: its samples placed, its anomaly patches pasted, the rest filled; the image, its
    validity map and the comparison with its original when there is one."""
    t0 = time.perf_counter()
    h = asm.header
    # the frame's anomaly patches received so far (all of them in file mode; in serve, those that came before
    # the frame completed: the flight sends them first) are full-resolution pixels: known, like its samples
    patches = station._frame_patches(asm.frame_id)
    shape = (h["height"], h["width"], h["channels"])
    unusable = [(i, patch_unusable(p.header, shape, h["bit_depth"])) for i, p in patches]
    # the size limits first (LimitError); then, for a frame that may be built (a received piece carries a sample,
    # or a patch of it can be pasted), its memory, before any of its mask is hashed (the pieces' checks hash all of
    # it when they claim every row: 256 MiB and seconds for a 16384 x 16384 frame); then the pieces against the rows
    # of the mask they claim: a frame no piece of which fits is refused (DecodeError), one whose fitting pieces carry
    # no sample is NothingReceived unless it has patches to paste (so a huge frame not received is reported so on a
    # small machine, not as ``memory``); only then is the whole mask made, and the frame-size arrays
    rebuild_empty = any(why is None for _, why in unusable)
    chosen: list[AutoChoice] = []  # --method auto: the fill that fits this frame, picked by its memory check

    def room() -> None:
        choice = _check_memory(station, asm)
        if choice is not None:
            chosen.append(choice)

    try:
        plan = check_sparse(asm, station.max_pixels, station.limits, rebuild_empty=rebuild_empty, room=room)
    except NothingReceived as exc:  # and none of its patches can be pasted (their headers say why)
        return nothing_received(station, asm, exc, [{"patch": i, "reason": why} for i, why in unusable], t0)
    res = place_sparse(plan)
    img = res.as_float()
    known = res.known
    depth, scaling = sample_scaling(h["bit_depth"])
    rep: dict[str, Any] = {
        "shape": list(res.samples.shape),
        "keep": asm.header["keep"],
        "bit_depth": h["bit_depth"],
        "output_samples": scaling,  # how the written samples give the sent counts back
        "pixels_sent": int(res.mask.sum()),
        "pixels_received": int(known.sum()),
        # of the pixels the mask sampled; None when it sampled none (0 of 0 is no fraction)
        "pixel_fraction_received": float(known.sum() / res.mask.sum()) if res.mask.any() else None,
        "pieces_bad": res.pieces_bad,
        "longest_row_gap": longest_row_gap(known),  # rows in a row with no sample received
        "reconstruction": station.fill_name,
    }
    # into the decode's own arrays (the counts above are taken already): no second frame-size array, which the
    # memory check does not count
    pasted = paste_patches(img, known, h["bit_depth"], patches, station.limits)
    rep.update(patches_used=len(pasted.used), patch_pixels_used=pasted.pixels, pixels_known=int(known.sum()))
    if pasted.not_used:
        rep["patches_not_used"] = pasted.not_used[:NAMES_LISTED]
    if not known.any():  # no sample received, and its patches gave no pixel after all: nothing to fill or write
        gone = NothingReceived(asm.frame_id, len(asm.pieces), not res.mask.any(), rep["pixels_sent"])
        return nothing_received(station, asm, gone, pasted.not_used, t0)
    notes: dict[str, Any] = {}
    recon = img
    fill = station.fill
    if isinstance(fill, AutoFill) and chosen:
        fill = fill.using(chosen[0].method)
        notes["reconstruction"] = chosen[0].method
        if chosen[0].note:
            notes["fill_auto"] = chosen[0].note
    if fill is not None and known.any():
        try:
            recon = fill(img, known, notes)
        except Exception as exc:  # e.g. a grey frame for an RGB CAE: the classical fill still rebuilds it
            if station.fallback is None:
                raise
            used: dict[str, Any] = {}  # --method auto says which fill it picked
            recon = station.fallback(img, known, used)
            rep["reconstruction"] = used.get("reconstruction", station.fallback_name)
            rep["fill_fallback"] = (
                f"{station.fill_name} could not fill this frame ({exc}); filled with {rep['reconstruction']}"
            )
            if "fill_auto" in used:
                rep["fill_auto"] = used["fill_auto"]
            if not station.fallback_said:  # once a session, plainly; each frame's report and line say it too
                station.fallback_said = True
                log.warning(
                    "--model %s cannot fill frame %d (%s): it and every other frame the model cannot fill are "
                    "filled with %s instead (their reports say so in fill_fallback)",
                    station.fill_name.removeprefix("cae:"), asm.frame_id, exc,
                    f"--method auto's fill ({rep['reconstruction']} for this one)"
                    if station.fallback_name == "auto" else station.fallback_name,
                )  # fmt: skip
    rep.update(notes)
    rep["decode_s"] = round(time.perf_counter() - t0, 4)
    if station.keep_images:
        station.images[asm.frame_id] = recon
        station.known[asm.frame_id] = known
    station._compare(asm.frame_id, recon, known, rep)
    # a frame deeper than 8 bits is written at 16 (PNG holds 16), full scale: its received samples come back
    # as ``output_samples`` says; grey and RGB as PNG, any other channel count (multispectral) as a TIFF
    station._write_images(
        [(f"frame_{asm.frame_id}{image_ext(recon)}", recon, depth), (f"frame_{asm.frame_id}_valid.png", known, 8)]
    )
    return rep


def nothing_received(
    station: GroundStation,
    asm: Assembly,
    why: NothingReceived,
    not_used: list[dict],
    t0: float,
) -> dict:
    """The report of a sparse frame with nothing to rebuild: no received piece carries a sample (``not_received``:
    those that did were lost on the link; or the frame sampled none) and no anomaly patch of it gave a pixel. Not a
    failure (packets lost on the link are accounted per product, not an error): no image is written (nor, unless a
    patch that could be pasted had the frame built, a frame-size array made), and ``image_note`` says why.
    ``pixels_sent``: the mask's kept pixels (``why.sent``) when it was generated whole, else None."""
    h = asm.header
    rep: dict[str, Any] = {
        "shape": [h["height"], h["width"], h["channels"]],
        "keep": h["keep"],
        "bit_depth": h["bit_depth"],
        "pixels_sent": why.sent,  # None: unknown, the rest of the mask is not hashed
        "pixels_received": 0,
        "pixel_fraction_received": None if why.sampled_none else 0.0,
        "pieces_bad": 0,
        "longest_row_gap": h["height"],
        "reconstruction": None,
        "patches_used": 0,
        "patch_pixels_used": 0,
        "pixels_known": 0,
    }
    if not why.sampled_none:
        rep["not_received"] = True
    if not_used:
        rep["patches_not_used"] = not_used[:NAMES_LISTED]
    rep["image_note"] = f"{why}: nothing to rebuild, no image written"
    if station._has_original(asm.frame_id):
        rep["psnr_error"] = (
            "no image was rebuilt (the frame sampled no pixel: no sample was sent to rebuild it from)"
            if why.sampled_none
            else "no image was rebuilt (nothing received to rebuild it from)"
        )
    elif asm.frame_id in station.original_notes:
        rep["psnr_error"] = station.original_notes[asm.frame_id]
    rep["decode_s"] = round(time.perf_counter() - t0, 4)
    return rep


def frame_patches(station: GroundStation, frame_id: int) -> list[tuple[int, Assembly]]:
    """(index, snapshot) of the anomaly patches of ``frame_id`` received so far.

    The patch index is kept up to date with the keys added since the last call alone: products are only ever
    added, and a dict keeps their order, so the newest are the first ``reversed`` gives (``serve`` calls this
    for every frame, holding the lock the parser takes for every record: never a pass over every product)."""
    with station.lock:  # the receiver may be taking packets in another thread
        products = station.receiver.products
        seen_of, seen = station._patch_keys_of
        if seen_of is not products or seen > len(products):  # another receiver's products: index them anew
            station._patch_keys, seen = {}, 0
        for k in reversed(list(itertools.islice(reversed(products), len(products) - seen))):
            if k[0] == "patch":
                station._patch_keys.setdefault(k[1], []).append(k)
        station._patch_keys_of = (products, len(products))
        return [(k[2], products[k].snapshot()) for k in station._patch_keys.get(frame_id, [])]


def rebuild_latent_frame(station: GroundStation, asm: Assembly) -> dict:
    """A latent frame's report, its image decoded with the station's decoder (none: the report says why)."""
    rep, recon = rebuild_latent(asm, station.limits or GroundLimits(), station.decoder)
    if recon is None:  # no decoder, or another encoder's
        station.failures[rep["error_reason"]] += 1
        return rep
    patches = sorted(i for i, _ in station._frame_patches(asm.frame_id))
    if patches:  # checked against the frame (check_patch_in_frame), but the decoder rebuilds from latents alone
        rep["patches_used"] = 0
        rep["patches_not_used"] = [{"patch": i, "reason": LATENT_PATCH_REASON} for i in patches[:NAMES_LISTED]]
    if station.keep_images:
        station.images[asm.frame_id] = recon
    station._compare(asm.frame_id, recon, None, rep)
    station._write_images([(f"latent_{asm.frame_id}{image_ext(recon)}", recon, 8)])
    return rep


def _check_memory(station: GroundStation, asm: Assembly) -> AutoChoice | None:
    """Refuse (``LimitError``, reason ``memory``) a sparse frame whose rebuild would not fit in the memory available;
    with ``--method auto`` (:class:`~.filler.AutoFill`), the best fill that fits it, refused when none does."""
    h = asm.header
    if isinstance(station.fill, AutoFill):
        original = station._has_original(asm.frame_id)
        return station.fill.choose(h["height"], h["width"], h["channels"], asm.frame_id, original, station.behind)
    check_memory(
        "sparse", asm.frame_id, h["height"], h["width"], h["channels"], station.fill_name,
        original=station._has_original(asm.frame_id),
    )  # fmt: skip
    return None
