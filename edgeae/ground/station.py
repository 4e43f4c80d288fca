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
product is reported as failed (``io``) with the file and the errno. How each kind of product is rebuilt from its
pieces (a sparse or latent frame, an anomaly patch, a telemetry record) is in :mod:`.rebuild`.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae import atomic

from .filler import Filler as Filler
from .filler import make_filler as make_filler
from .limits import GroundLimits
from .outputs import NAMES_LISTED, failure_reason, psnr_fields, remove_images, write_images
from .outputs import PATCH_FILE_KEYS as PATCH_FILE_KEYS
from .outputs import PSNR_CAP_DB as PSNR_CAP_DB
from .outputs import OutputError as OutputError
from .outputs import product_name as product_name
from .outputs import strict_json as strict_json
from .patch_checks import announced_not_received, check_patch_in_frame, recheck_patches
from .reassembly import Assembly, Receiver
from .rebuild import decode_one, frame_patches, rebuild_latent_frame, rebuild_sparse

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
    behind: int = 0  # sparse frames waiting for the live decoder (serve): --method auto takes a faster fill from 2
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
        return decode_one(self, asm, rep)  # a method: tests stop a session here (monkeypatch on the class)

    def _write_images(self, images: list[tuple[str, np.ndarray, int]]) -> None:
        if self.out is not None:
            write_images(self.out, images)

    def _check_patch_in_frame(self, frame_id: int, hd: dict) -> None:
        check_patch_in_frame(self, frame_id, hd)

    def _sparse(self, asm: Assembly) -> dict:
        return rebuild_sparse(self, asm)

    def _frame_patches(self, frame_id: int) -> list[tuple[int, Assembly]]:
        """(index, snapshot) of the anomaly patches of ``frame_id`` received so far (:func:`.rebuild.frame_patches`)."""
        return frame_patches(self, frame_id)

    def _latent(self, asm: Assembly) -> dict:
        return rebuild_latent_frame(self, asm)

    def _has_original(self, frame_id: int) -> bool:
        """Whether the frame will be compared with an original (its memory counts in the frame's check); a lazily
        read set of originals (``edgeae ground --original``) knows its frames without reading them."""
        return self.default_original is not None or frame_id in self.originals

    def _compare(self, frame_id: int, recon: np.ndarray, known: np.ndarray | None, rep: dict) -> None:
        flight = self._flight_bayer(frame_id)
        get_flight = getattr(self.originals, "get_flight", None)  # lazily read originals (edgeae ground --original)
        if flight and get_flight is not None:
            orig, used = get_flight(frame_id, flight, self.default_original)
            if used:
                rep["original_demosaiced"] = f"{used}: the frame's telemetry says the flight demosaiced it so"
        else:
            orig = self.originals.get(frame_id, self.default_original)
        if orig is None:
            if frame_id in self.original_notes:
                rep["psnr_error"] = self.original_notes[frame_id]
            return
        rep.update(psnr_fields(orig, recon, known))

    def _flight_bayer(self, frame_id: int) -> str | None:
        """The colour-filter pattern this frame's telemetry record (received and decoded before it: the flight
        sends telemetry ahead of sparse pixels) says the flight demosaiced it with, or None."""
        from edgeae.bayer import PATTERNS

        tel = self.reports.get(f"telemetry_{frame_id}", {}).get("telemetry")
        pattern = tel.get("demosaiced") if isinstance(tel, dict) else None
        return pattern if isinstance(pattern, str) and pattern in PATTERNS else None

    def report(self) -> dict:
        """The session report so far: stream totals (with products not rebuilt, by reason) and products.

        ``stream.complete`` is False until :meth:`finish` has decoded every product; until then
        ``products_not_decoded`` counts the products received but not decoded (yet), and
        ``products_not_decoded_names`` names the first :data:`NAMES_LISTED` of them."""
        stream = self.receiver.stream_report()
        stream["products_failed"] = dict(sorted(self.failures.items()))
        gone = sum(1 for rep in list(self.reports.values()) if rep.get("not_received"))
        if gone:  # every piece received carried no sample, no patch gave a pixel: lost on the link, not a failure
            stream["frames_not_received"] = gone
        fills = Counter(str(rep["reconstruction"]) for rep in list(self.reports.values()) if rep.get("reconstruction"))
        if fills:  # sparse frames rebuilt, by the fill that filled them (--method auto picks per frame)
            stream["frames_by_fill"] = dict(sorted(fills.items()))
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
