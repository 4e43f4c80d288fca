"""Where packets and originals come from: image files, flight-runtime pass files, recorded packet files."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edgeae.masks import PRNG_VERSION, iter_mask_strips
from edgeae.wire.packets import MAX_PACKET, PRIMARY_HEADER
from edgeae.wire.products import SparseFrame, sample_dtype
from edgeae.wire.stream import GARBAGE, MAGIC, RECORD, Damage, check_header, iter_packet_file, iter_stream_file

from .captures import CAPTURE_LOOKAHEAD as CAPTURE_LOOKAHEAD  # the capture routing, in .captures since session 37
from .captures import CAPTURE_LOOKAHEAD_BYTES as CAPTURE_LOOKAHEAD_BYTES
from .captures import Capture as Capture
from .captures import feed_captures as feed_captures

log = logging.getLogger(__name__)
MAX_DAMAGE_LINES = 20
"""Damaged stretches of one file logged one by one; the rest are summed up in one line."""


def image_samples(path: str | Path, channels: int | None = None, bayer: str | None = None) -> tuple[np.ndarray, int]:
    """An image file as integer samples (H, W, C) uint8/uint16 and its bit depth.

    Integer samples of up to 16 bits are kept exactly; float samples (in [0, 1]) and integers of more than 16
    bits, which the wire format cannot carry, are quantised to 16 bits (NaN and inf become 0). ``bayer``: the
    file is a raw colour-filter mosaic of that pattern, demosaiced first exactly as the rover mission does onboard
    (:func:`edgeae.bayer.demosaic_bilinear`).

    An image file of integer counts kept as stored (or grey given 3 channels) is read as those counts
    (:func:`edgeae.imageio.read_raw`), never through a float copy of the frame: a 264 MB 8-bit strip took 3.4 GB
    that way. Other files (archive products, float or 32-bit samples, RGB made grey) go through
    :func:`edgeae.imageio.read_image`; both give the same samples."""
    stored = _stored_counts(Path(path), channels, bayer)
    if stored is not None:
        return stored
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels, detect_nodata=False, bayer=bayer)
    exact = np.dtype(img.raw_dtype).kind in "ui" and img.bit_depth <= 16
    bits = max(1, int(img.bit_depth)) if exact else 16
    top = 2**bits - 1
    factor = np.float32(img.scale if exact else top)
    samples = np.round(np.clip(img.pixels * factor, 0, top)).astype(sample_dtype(bits))
    _warn_empty(path, int(img.valid.size - np.count_nonzero(img.valid)))  # NaN/inf samples, transparent pixels
    return samples, bits


def _warn_empty(path: str | Path, empty: int) -> None:
    if empty:  # until review r13 of session 36 "read as sample value 0", where a transparent pixel's RGB is sent
        log.warning("%s: %d pixel(s) hold no data (NaN/inf or transparent): NaN/inf read as 0, transparent "
                    "pixels sent as stored (the ground cannot tell them from data; their PSNR leaves them out)",
                    path, empty)  # fmt: skip


def _stored_counts(path: Path, channels: int | None, bayer: str | None) -> tuple[np.ndarray, int] | None:
    """:func:`image_samples` of an image file of unsigned integer counts of up to 16 bits, read as stored (counts
    above the bit depth clipped to its top, as :func:`edgeae.imageio.to_float` clips them; grey repeated for 3
    channels); None for anything it does not read so (see :func:`image_samples`)."""
    from edgeae.archive.formats import is_archive_path

    if channels not in (None, 1, 3) or (bayer and channels == 1) or is_archive_path(path):
        return None
    from edgeae.bayer import demosaic_bilinear, looks_like_mosaic, mosaic_plane
    from edgeae.imagedecode import probe
    from edgeae.imageio import read_raw

    info = probe(path)  # decided from the header where it can be: read_image would decode the file a second time
    if info.bit_depth > 16 or (channels == 1 and info.channels == 3):
        return None  # 32-bit (float or integer) samples are quantised, RGB made grey weighted: read_image's path
    raw, bits, alpha = read_raw(path)
    if raw.dtype.kind != "u" or not 1 <= bits <= 16 or (channels == 1 and raw.shape[2] == 3):
        return None  # what the header does not tell (16-bit float samples): read_image's float path
    if not bayer and looks_like_mosaic(raw):  # as read_image warns
        log.warning(
            "%s looks like an undemosaiced colour-filter mosaic (2x2 repeating values); give --bayer PATTERN "
            "(bayer= in the library) to demosaic it",
            path,
        )
    top = 2**bits - 1
    if bits < 8 * raw.dtype.itemsize and int(raw.max(initial=0)) > top:  # 12-bit-in-16 files: stray high values
        raw = np.minimum(raw, top, out=raw if raw.flags.writeable else None)
    samples = raw.astype(sample_dtype(bits), copy=False)
    if bayer:  # the flight's own demosaicing (numpy, edgeae.bayer.demosaic_strips), not OpenCV's: a frame the rover
        # mission sent whole compares exactly (audit s32-a6: OpenCV's differed by a step inside, up to 28 at edges)
        try:
            samples = demosaic_bilinear(mosaic_plane(samples), bayer)
        except ValueError:
            return None  # channels that differ: read_image says it is colour already
    if channels == 3 and samples.shape[2] == 1:
        samples = np.repeat(samples, 3, axis=2)
    _warn_empty(path, 0 if alpha is None else int(alpha.size - np.count_nonzero(alpha)))  # transparent pixels
    return samples, bits


def as_float(samples: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer samples as float32 in [0, 1], as the ground decodes them (divided by 2**bit_depth - 1): one float
    copy divided in place, bit for bit ``samples.astype(np.float32) / np.float32(2**bit_depth - 1)``, whose peak of
    one float array relied on numpy eliding the temporary (done only for arrays over 256 KiB called from Python)."""
    out = samples.astype(np.float32)
    out /= np.float32(2**bit_depth - 1)
    return out


def sparse_from_samples(
    samples: np.ndarray, bit_depth: int, keep: float, seed: int, pattern: str = "uniform", frame_id: int = 0
) -> SparseFrame:
    """The sparse product of integer samples (H, W, C): the values the mask of (seed, keep, pattern) keeps, in
    raster order. The mask is made a strip of rows at a time (:func:`edgeae.masks.iter_mask_strips`), never
    for the whole frame."""
    h, w, c = samples.shape
    parts = [samples[r0 : r0 + len(rows)][rows] for r0, rows in iter_mask_strips(seed, (h, w), keep, pattern)]
    values = np.concatenate(parts) if parts else samples.reshape(-1, c)[:0]
    return SparseFrame(frame_id, h, w, c, bit_depth, keep, pattern, seed, PRNG_VERSION, values)


def pass_order(f: Path) -> tuple[float, str]:
    """The order in which the flight wrote its pass files: by the number of ``pass_N.bin`` (as text
    ``pass_100000.bin`` sorts between ``pass_10000.bin`` and ``pass_10001.bin``), any other name after them, by name.
    The flight's report orders them by the same rule (``firmware_sim.report_packets.pass_files``), so both keep the
    same first of two resends with other values."""
    return (int(m[1]) if (m := re.fullmatch(r"pass_([0-9]+)", f.stem)) else math.inf), f.name  # ASCII: int('²') raises


def packet_files(path: str | Path) -> list[Path]:
    """``path`` itself, or for a directory every ``*.bin`` file in it, in the order they were written
    (:func:`pass_order`; until session 36 in name order, so from pass 100,000 on the ground kept another first
    resend than the flight's report)."""
    p = Path(path)
    if not p.is_dir():
        return [p]
    files = sorted(p.glob("*.bin"), key=pass_order)
    if not files:
        raise FileNotFoundError(f"no *.bin packet files in {p}")
    return files


def iter_packets(path: str | Path) -> Iterator[tuple[float, bytes] | Damage]:
    """Packets of one file (or directory, see :func:`packet_files`), with arrival times when recorded, and a
    :class:`~edgeae.wire.stream.Damage` for each stretch of bytes that formed no packet, read a window at a
    time (memory does not grow with the file; a caller that hands each packet on keeps none).

    An edgeae packet file (``EAPK`` records) keeps every record as it is, damaged or not, and resynchronises
    after a damaged record length; anything else is read as CCSDS space packets back to back (a
    flight-runtime ``pass_NNNNN.bin``), resynchronising on the CRC, with damaged packets handed on for the
    receiver to count as corrupt. Errors in the file header (:class:`~edgeae.wire.stream.PacketFileError`)
    are raised before the first item.
    """
    files = packet_files(path)
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(len(MAGIC) + 1)
        yield from iter_packet_file(f) if _record_file(head) else iter_stream_file(f)


def feed_packets(
    path: str | Path, take: Callable[[float, bytes], object], hand_on_cut: bool = True
) -> tuple[int, list[Damage]]:
    """Hand every packet of ``path`` (see :func:`iter_packets`) to ``take(arrival_time, packet)`` as it is
    read, keeping none; returns the bytes that formed no packet and the damaged stretches of record files.

    Damage in a record file (a record length that cannot be right, a truncated last record) is logged as a
    warning naming the file, the record number and the byte offset (the first :data:`MAX_DAMAGE_LINES` per
    file one by one, then one summary line); noise in a plain stream only at debug level (the caller reports
    the total). The part of a truncated last record's packet that is there (a primary header at least) is
    handed to ``take`` as a damaged packet, as a plain stream's reader hands on a cut packet, so the receiver
    counts it as corrupt, not lost; its bytes are then not counted as forming no packet (``hand_on_cut``
    False: not handed on, its bytes skipped, for a caller that sends or replays the packets rather than
    receiving them).
    """
    skipped = 0
    damage: list[Damage] = []
    logged: dict[str, list[int]] = {}
    for item in iter_packets(path):
        if not isinstance(item, Damage):
            take(*item)
            continue
        cut = _truncated_packet(item) if hand_on_cut else None
        if cut is not None:  # handed on as a damaged packet: the receiver charges it to its count as corrupt
            take(*cut)
        else:
            skipped += item.nbytes
        if item.reason == GARBAGE:
            log.debug("%s", item)
            continue
        damage.append(item)
        seen = logged.setdefault(item.path, [0, 0])
        seen[0] += 1
        seen[1] += item.nbytes
        if seen[0] <= MAX_DAMAGE_LINES:
            log.warning("%s%s", item, " (its packet is handed on as a damaged packet)" if cut else "")
    for name, (n, nbytes) in logged.items():
        if n > MAX_DAMAGE_LINES:
            log.warning(
                "%s: %d more damaged stretches (%s bytes skipped in all)", name, n - MAX_DAMAGE_LINES, f"{nbytes:,}"
            )
    return skipped, damage


def _truncated_packet(item: Damage) -> tuple[float, bytes] | None:
    """The arrival time and bytes of the packet in a record file's truncated last record (``item``, read back
    from its file: :class:`Damage` carries where, not the bytes), when the record header is whole and at least
    a primary header of the packet is there; else None. Handed to the receiver like a damaged record, it counts
    as a corrupt packet of its product, not a lost one."""
    if item.reason != "truncated" or item.nbytes < RECORD.size + PRIMARY_HEADER:
        return None
    try:
        with open(item.path, "rb") as fh:
            fh.seek(item.offset)
            data = fh.read(min(item.nbytes, RECORD.size + MAX_PACKET))
    except OSError:
        return None
    if len(data) < RECORD.size + PRIMARY_HEADER:
        return None
    t, _ = RECORD.unpack_from(data)
    return t, data[RECORD.size :]


def read_packets(path: str | Path) -> tuple[list[tuple[float, bytes]], int]:
    """Packets of one file (see :func:`iter_packets`) and the number of bytes that formed no packet, as a list
    (damage logged as :func:`feed_packets` does), for sending or replaying them: a truncated last record's cut
    packet is not among them (its bytes are counted as skipped), so ``downlink send`` never transmits it."""
    out: list[tuple[float, bytes]] = []
    skipped, _ = feed_packets(path, lambda t, pkt: out.append((t, pkt)), hand_on_cut=False)
    return out, skipped


ORIGINAL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
"""Image files an ``--original`` folder is searched for."""


def original_files(path: str | Path, check: bool = True) -> dict[int, Path]:
    """The originals of a folder by frame id: image files whose name ends in the id (``frame_3.png``,
    ``3.png``, ``img_0003.tif``). Two files for one id (``frame_3.png``, ``frame_03.png``) are refused
    (ValueError) rather than one picked by name order; ``check``: each file's header is read
    (:func:`edgeae.imagedecode.probe`), so a file that is no readable image is refused before any packet is."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"original {p} does not exist")
    found: dict[int, list[Path]] = {}
    for f in sorted(p.iterdir()):
        m = re.search(r"(\d+)$", f.stem)
        if m and f.suffix.lower() in ORIGINAL_SUFFIXES and f.is_file():
            found.setdefault(int(m.group(1)), []).append(f)
    twice = {i: fs for i, fs in found.items() if len(fs) > 1}
    if twice:
        i, fs = next(iter(twice.items()))
        more = f" (and {len(twice) - 1} more ids)" if len(twice) > 1 else ""
        raise ValueError(
            f"--original {p}: {len(fs)} files for frame {i} ({', '.join(f.name for f in fs)}){more}: keep one "
            "original per frame id"
        )
    if check:
        from edgeae.imagedecode import probe

        for fs in found.values():
            probe(fs[0])
    return {i: fs[0] for i, fs in found.items()}


def load_originals(
    path: str | Path, frame_ids: list[int], bayer: str | None = None, missing: dict[int, str] | None = None
) -> dict[int, np.ndarray]:
    """Originals for PSNR from a directory of files whose name ends in the frame id (``frame_3.png``,
    ``3.png``, ``img_0003.tif``; see :func:`original_files`), as float32 in [0, 1] (``bayer``: demosaiced,
    see :func:`image_samples`). ``missing``, when given, receives why a frame of ``frame_ids`` has none (no
    file, or one whose pixels cannot be read); without it an unreadable file raises."""
    files = original_files(path, check=False)
    out = {}
    for i in frame_ids:
        if i not in files:
            if missing is not None:
                missing[i] = f"no original for frame {i} in {path} (a file whose name ends in {i})"
            continue
        try:
            s, bits = image_samples(files[i], bayer=bayer)
        except (OSError, ValueError) as exc:  # the header read fine (original_files), the pixels did not
            if missing is None:
                raise
            missing[i] = f"original {files[i]} could not be read: {exc}"
            continue
        out[i] = as_float(s, bits)
    return out


def check_packet_files(path: str | Path) -> list[Path]:
    """The files :func:`iter_packets` would read, each checked for a readable header first: a folder without
    ``*.bin`` files (FileNotFoundError) or a record file with a wrong version or a truncated header
    (:class:`~edgeae.wire.stream.PacketFileError`, from :func:`edgeae.wire.stream.check_header`) is refused
    before any packet is read."""
    files = packet_files(path)
    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(len(MAGIC) + 1)
        if _record_file(head):
            check_header(head, f)
    return files


def _record_file(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 5 bytes) is read as a record file: it starts with the
    magic, or is shorter than it and all of it is the magic's start (a truncated header, refused as such).
    Anything else is a plain stream of space packets."""
    return head[: len(MAGIC)] == MAGIC or (0 < len(head) < len(MAGIC) and MAGIC.startswith(head))
