"""The ground station: receive packets, decode products, rebuild images and write them with a report.

Sparse frames are rebuilt from the received pixels with the CAE (``edgeae.reconstruct``, any model format
through ``edgeae.predictor.load_predictor``) or, with no model, by classical inpainting. Latent frames are
decoded with a ``cae-decoder`` artifact whose id matches the frame's encoder id (or any given decoder).
Per frame it writes ``frame_<id>.png`` (reconstruction; ``.tif`` for other than 1 or 3 channels),
``frame_<id>_valid.png`` (white = pixel received) and ``frame_<id>.json`` (packets expected / received /
lost / corrupt / refused, pixels received, PSNR when the original is known); the frame's anomaly patches that
arrived are known pixels of its rebuild, and each patch is written as ``patch_<id>_<index>.png`` on its frame's
scale (with a validity map when it arrived in part); ``stream.json`` holds the session totals. Every file is
written atomically (:mod:`edgeae.atomic`): a write that fails (a full disk) leaves no cut-off file, and the
product is reported as failed (``io``) with the file and the errno.
"""

from __future__ import annotations

import errno
import itertools
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae import atomic

from .decode import (
    LATENT_PATCH_REASON,
    DecodeError,
    coverage,
    decode_flat,
    decode_sparse,
    longest_row_gap,
    paste_patches,
    telemetry_json,
)
from .filler import Filler as Filler
from .filler import make_filler as make_filler
from .latent import rebuild_latent
from .limits import GroundLimits, check_frame, check_memory
from .outputs import (
    NAMES_LISTED,
    failure_reason,
    image_ext,
    patch_images,
    psnr_fields,
    remove_images,
    sample_scaling,
    write_images,
)
from .outputs import PATCH_FILE_KEYS as PATCH_FILE_KEYS
from .outputs import PSNR_CAP_DB as PSNR_CAP_DB
from .outputs import OutputError as OutputError
from .outputs import product_name as product_name
from .outputs import strict_json as strict_json
from .patch_checks import announced_not_received, check_patch_in_frame, recheck_patches
from .reassembly import Assembly, Receiver

log = logging.getLogger(__name__)


@dataclass
class GroundStation:
    """Receives packets (any order, any damage) and decodes products into ``out`` on demand."""

    out: Path | None = None
    fill: Filler | None = None
    fill_name: str = "none"
    decoder: Any = None  # a predictor for latent frames (cae-decoder), or None
    originals: dict[int, np.ndarray] = field(default_factory=dict)  # frame id -> float32 (H, W, C) in [0, 1]
    receiver: Receiver = field(default_factory=Receiver)
    reports: dict[str, dict] = field(default_factory=dict)
    images: dict[int, np.ndarray] = field(default_factory=dict)  # frame id -> rebuilt float32 (H, W, C)
    known: dict[int, np.ndarray] = field(default_factory=dict)  # frame id -> bool (H, W) pixels received
    # keep each rebuilt frame in ``images`` / ``known`` for the caller (``pipeline``); False: a station that only
    # writes its products (the CLI's) holds none of them after writing, so memory does not grow with the frames
    keep_images: bool = True
    default_original: np.ndarray | None = None  # compared with frames missing from ``originals``
    max_pixels: int = 1 << 28  # frames claiming more pixels are reported, not decoded
    limits: GroundLimits | None = None  # every size a packet claims is checked against these first
    failures: Counter[str] = field(default_factory=Counter)  # products not rebuilt, by reason
    fallback: Filler | None = None  # fills a frame that ``fill`` (a CAE) cannot: classical inpainting
    fallback_name: str = ""
    original_notes: dict[int, str] = field(default_factory=dict)  # frame id -> why it has no original
    lock: Any = field(default_factory=threading.RLock)  # held while reading the receiver's state
    finished: bool = False  # finish() has decoded every product: stream.json says ``complete``
    fallback_said: bool = False  # the console was told once that the CAE could not fill a frame
    _patch_keys: dict[int, list[tuple[str, int, int]]] = field(default_factory=dict, init=False, repr=False)
    _patch_keys_of: tuple[object, int] = field(default=(None, 0), init=False, repr=False)  # (products, count) indexed
    # product -> its pieces when it was decoded (:func:`_pieces_state`): one that changed since is decoded again
    _decoded_state: dict[tuple[str, int, int], tuple[int, int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = Path(self.out)  # a str path works too
            self.out.mkdir(parents=True, exist_ok=True)
        if self.limits is None:
            self.limits = (
                GroundLimits() if self.max_pixels == 1 << 28 else GroundLimits(max_frame_pixels=self.max_pixels)
            )
        if self.receiver.limits != self.limits and not self.receiver.products:
            self.receiver.limits = self.limits

    def sibling(self, out: Path | None) -> GroundStation:
        """A station for another capture: the same fill, decoder and limits, its own receiver, products and
        ``out`` (so its sequence counts and frame ids are its own); the session limits bound both together."""
        return GroundStation(
            out=out, fill=self.fill, fill_name=self.fill_name, decoder=self.decoder, limits=self.limits,
            max_pixels=self.max_pixels, receiver=Receiver(self.limits, self.receiver.totals), fallback=self.fallback,
            fallback_name=self.fallback_name, keep_images=self.keep_images,
        )  # fmt: skip

    def receive(self, data: bytes) -> bool:
        """Take one packet; True when it was new and valid."""
        return self.receiver.receive(data) is not None

    def complete(self) -> list[tuple[str, int, int]]:
        """Products whose packets have all arrived and that were not decoded yet, or whose pieces changed since
        they were decoded (:meth:`changed`)."""
        with self.lock:
            return [
                k
                for k, a in self.receiver.products.items()
                if len(a.pieces) == a.parts and (product_name(k) not in self.reports or self._changed(k, a))
            ]

    def changed(self) -> list[tuple[str, int, int]]:
        """Products decoded before more of their pieces arrived (``serve`` decodes a product once it is complete:
        a second frame sent later under the same id, or a late copy with other headers, changes which pieces it
        is made of and what its report counts). :meth:`finish` decodes them again."""
        with self.lock:
            return [k for k, a in self.receiver.products.items() if self._changed(k, a)]

    def _changed(self, key: tuple[str, int, int], asm: Assembly) -> bool:
        state = self._decoded_state.get(key)
        return state is not None and state != _pieces_state(asm)

    def decode(self, keys: list[tuple[str, int, int]] | None = None) -> dict[str, dict]:
        """Decode the given products (default: all received so far); returns their reports by name."""
        done = {}
        for key in keys if keys is not None else list(self.receiver.products):
            with self.lock:  # the receiver may be taking packets in another thread
                live = self.receiver.products[key]
                asm = live.snapshot()
                self._decoded_state[key] = _pieces_state(live)
                base = self._report_or_empty(asm)
            if product_name(key) in self.reports:  # decoded again: what the earlier decode counted and wrote goes
                self._forget(key)
            try:
                rep = self._decode_one(asm, dict(base))
            except Exception as exc:  # one product, whatever went wrong, is reported and counted: never fatal
                reason = failure_reason(exc)
                self.failures[reason] += 1
                # the report (and the CLI's product line) says it; not a second time on the console
                log.info("%s not rebuilt (%s): %s", product_name(key), reason, exc)
                rep = {**base, "error": str(exc) or type(exc).__name__, "error_reason": reason}
                if isinstance(exc, OSError):  # which file, and the system's reason (ENOSPC: the disk is full)
                    rep["error_file"] = str(exc.path if isinstance(exc, OutputError) else exc.filename or "") or None
                    rep["errno"] = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else None
            if self.out is not None:
                try:
                    text = strict_json(rep)
                except ValueError as exc:  # a report that cannot be JSON would stop stream.json: reported failed
                    self._uncount(rep.get("error_reason"))
                    self.failures["internal"] += 1
                    rep = {**base, "error": f"its report cannot be written as JSON: {exc}", "error_reason": "internal"}
                    text = strict_json(rep)
            self.reports[product_name(key)] = rep
            done[product_name(key)] = rep
            if self.out is not None:
                try:
                    atomic.write_text(self.out / f"{product_name(key)}.json", text, durable=False)
                except OSError as exc:
                    if "error_reason" not in rep:  # a product that failed already is counted once, not twice
                        self.failures["write"] += 1
                    rep["write_error"] = str(exc)
        return done

    def _forget(self, key: tuple[str, int, int]) -> None:
        """Undo what the earlier decode of ``key`` counted, kept and wrote (its report file is overwritten)."""
        name = product_name(key)
        old = self.reports.pop(name)
        self._uncount(old.get("error_reason") or ("write" if "write_error" in old else None))
        if key[0] in ("sparse", "latent"):
            self.images.pop(key[1], None)
            self.known.pop(key[1], None)
        if self.out is not None:
            remove_images(self.out, name)

    def _uncount(self, reason: str | None) -> None:
        if reason is not None and self.failures[reason] > 0:
            self.failures[reason] -= 1
            if not self.failures[reason]:
                del self.failures[reason]

    def _report_or_empty(self, asm: Assembly) -> dict:
        try:
            return self.receiver.product_report(asm)
        except Exception:  # the report itself must not take the session down
            return {"kind": asm.kind, "frame_id": asm.frame_id}

    def _decode_one(self, asm: Assembly, rep: dict) -> dict:
        if asm.kind == "sparse":
            rep.update(self._sparse(asm))
        elif asm.kind == "latent":
            rep.update(self._latent(asm))
        else:
            res = decode_flat(asm, self.limits)
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
                self._check_patch_in_frame(asm.frame_id, res.header)
                if not math.isfinite(res.header["score"]):  # the sender refuses these: a damaged or rogue product
                    raise DecodeError(
                        f"patch {asm.frame_id}/{res.header['index']}: anomaly score {res.header['score']} is not "
                        "finite (a flight product always has a finite score): patch not written"
                    )
                rep["score"] = res.header["score"]
                images, written = patch_images(asm.frame_id, res.header, res.values, res.received)
                rep.update(written)
                self._write_images(images)
        return rep

    def _write_images(self, images: list[tuple[str, np.ndarray, int]]) -> None:
        if self.out is not None:
            write_images(self.out, images)

    def _check_patch_in_frame(self, frame_id: int, hd: dict) -> None:
        check_patch_in_frame(self, frame_id, hd)

    def _sparse(self, asm: Assembly) -> dict:
        t0 = time.perf_counter()
        h = asm.header  # the size limits first, then whether the rebuild fits in memory: before any allocation
        check_frame("sparse", asm.frame_id, h["height"], h["width"], h["channels"], self.limits or GroundLimits())
        check_memory(
            "sparse", asm.frame_id, h["height"], h["width"], h["channels"], self.fill_name,
            original=self._has_original(asm.frame_id),
        )  # fmt: skip
        res = decode_sparse(asm, self.max_pixels, self.limits)
        img = res.as_float()
        known = res.known
        if res.pieces_bad and not known.any():  # nothing placed: a black frame would pass for a rebuilt one
            raise DecodeError(
                f"frame {asm.frame_id}: none of the {res.pieces_bad} pieces received fits the frame's sample mask "
                "(its seed, pattern or PRNG version disagrees with the pieces): nothing to rebuild"
            )
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
            "reconstruction": self.fill_name,
        }
        # the frame's anomaly patches received so far (all of them in file mode; in serve, those that came before
        # the frame completed: the flight sends them first) are full-resolution pixels: known, like its samples
        patches = self._frame_patches(asm.frame_id)
        # into the decode's own arrays (the counts above are taken already): no second frame-size array, which the
        # memory check does not count
        pasted = paste_patches(img, known, h["bit_depth"], patches, self.limits)
        rep.update(patches_used=len(pasted.used), patch_pixels_used=pasted.pixels, pixels_known=int(known.sum()))
        if pasted.not_used:
            rep["patches_not_used"] = pasted.not_used[:NAMES_LISTED]
        notes: dict[str, Any] = {}
        recon = img
        if self.fill is not None and known.any():
            try:
                recon = self.fill(img, known, notes)
            except Exception as exc:  # e.g. a grey frame for an RGB CAE: the classical fill still rebuilds it
                if self.fallback is None:
                    raise
                recon = self.fallback(img, known, {})
                rep["reconstruction"] = self.fallback_name
                rep["fill_fallback"] = (
                    f"{self.fill_name} could not fill this frame ({exc}); filled with {self.fallback_name}"
                )
                if not self.fallback_said:  # once a session, plainly; each frame's report and line say it too
                    self.fallback_said = True
                    log.warning(
                        "--model %s cannot fill frame %d (%s): it and every other frame the model cannot fill are "
                        "filled with %s instead (their reports say so in fill_fallback)",
                        self.fill_name.removeprefix("cae:"), asm.frame_id, exc, self.fallback_name,
                    )  # fmt: skip
        rep.update(notes)
        rep["decode_s"] = round(time.perf_counter() - t0, 4)
        if self.keep_images:
            self.images[asm.frame_id] = recon
            self.known[asm.frame_id] = known
        self._compare(asm.frame_id, recon, known, rep)
        # a frame deeper than 8 bits is written at 16 (PNG holds 16), full scale: its received samples come back
        # as ``output_samples`` says; grey and RGB as PNG, any other channel count (multispectral) as a TIFF
        self._write_images(
            [(f"frame_{asm.frame_id}{image_ext(recon)}", recon, depth), (f"frame_{asm.frame_id}_valid.png", known, 8)]
        )
        return rep

    def _frame_patches(self, frame_id: int) -> list[tuple[int, Assembly]]:
        """(index, snapshot) of the anomaly patches of ``frame_id`` received so far.

        The patch index is kept up to date with the keys added since the last call alone: products are only ever
        added, and a dict keeps their order, so the newest are the first ``reversed`` gives (``serve`` calls this
        for every frame, holding the lock the parser takes for every record: never a pass over every product)."""
        with self.lock:  # the receiver may be taking packets in another thread
            products = self.receiver.products
            seen_of, seen = self._patch_keys_of
            if seen_of is not products or seen > len(products):  # another receiver's products: index them anew
                self._patch_keys, seen = {}, 0
            for k in reversed(list(itertools.islice(reversed(products), len(products) - seen))):
                if k[0] == "patch":
                    self._patch_keys.setdefault(k[1], []).append(k)
            self._patch_keys_of = (products, len(products))
            return [(k[2], products[k].snapshot()) for k in self._patch_keys.get(frame_id, [])]

    def _latent(self, asm: Assembly) -> dict:
        rep, recon = rebuild_latent(asm, self.limits or GroundLimits(), self.decoder)
        if recon is None:  # no decoder, or another encoder's
            self.failures[rep["error_reason"]] += 1
            return rep
        patches = sorted(i for i, _ in self._frame_patches(asm.frame_id))
        if patches:  # checked against the frame (check_patch_in_frame), but the decoder rebuilds from latents alone
            rep["patches_used"] = 0
            rep["patches_not_used"] = [{"patch": i, "reason": LATENT_PATCH_REASON} for i in patches[:NAMES_LISTED]]
        if self.keep_images:
            self.images[asm.frame_id] = recon
        self._compare(asm.frame_id, recon, None, rep)
        self._write_images([(f"latent_{asm.frame_id}{image_ext(recon)}", recon, 8)])
        return rep

    def _has_original(self, frame_id: int) -> bool:
        """Whether the frame will be compared with an original (its memory counts in the frame's check); a lazily
        read set of originals (``edgeae ground --original``) knows its frames without reading them."""
        return self.default_original is not None or frame_id in self.originals

    def _compare(self, frame_id: int, recon: np.ndarray, known: np.ndarray | None, rep: dict) -> None:
        orig = self.originals.get(frame_id, self.default_original)
        if orig is None:
            if frame_id in self.original_notes:
                rep["psnr_error"] = self.original_notes[frame_id]
            return
        rep.update(psnr_fields(orig, recon, known))

    def report(self) -> dict:
        """The session report so far: stream totals (with products not rebuilt, by reason) and products.

        ``stream.complete`` is False until :meth:`finish` has decoded every product; until then
        ``products_not_decoded`` counts the products received but not decoded (yet), and
        ``products_not_decoded_names`` names the first :data:`NAMES_LISTED` of them."""
        stream = self.receiver.stream_report()
        stream["products_failed"] = dict(sorted(self.failures.items()))
        announced = announced_not_received(self)
        if announced is not None:  # in a telemetry record, never a packet of them: lost whole, or not yet sent
            stream["patches_announced_not_received"] = announced
        stream["complete"] = self.finished
        if not self.finished:
            with self.lock:
                pending = [n for n in map(product_name, list(self.receiver.products)) if n not in self.reports]
            stream["products_not_decoded"] = len(pending)
            stream["products_not_decoded_names"] = pending[:NAMES_LISTED]
        return {"stream": stream, "products": self.reports}

    def write_report(self, report: dict | None = None) -> dict:
        """Write ``stream.json`` (the report so far, or ``report``) into ``out`` atomically (never a half-written
        report); returns the report. An ``OSError`` (a full disk) names ``stream.json``."""
        report = report if report is not None else self.report()
        if self.out is not None:
            atomic.write_text(self.out / "stream.json", strict_json(report))
        return report

    def finish(self, write: bool = True) -> dict:
        """Decode everything not decoded yet; write (``write``: else the caller does) and return the session report.

        A first report (``complete: false``) is written before decoding, so an interrupted finish still leaves
        one; when even that cannot be written (a full disk), decoding goes on: each product says how it fared.
        """
        if self.out is not None:
            try:
                self.write_report()
            except OSError as exc:
                log.warning("%s; decoding goes on", exc)
        with self.lock:
            todo = [k for k in self.receiver.products if product_name(k) not in self.reports]
        again = self.changed()
        for key in again:
            log.warning(
                "%s was decoded before more of its packets arrived (a second product under the same id, or pieces "
                "with other headers): decoded again with every packet received",
                product_name(key),
            )
        self.decode(todo + again)
        self._recheck_patches()
        self.finished = True
        return self.write_report() if write else self.report()

    def _recheck_patches(self) -> None:
        recheck_patches(self)


def _pieces_state(asm: Assembly) -> tuple[int, int]:
    """What a product's decode and report depend on: the pieces it holds (every header group) and those set aside
    under a part already held."""
    return sum(len(g) for g in asm.groups.values()), asm.conflicting
