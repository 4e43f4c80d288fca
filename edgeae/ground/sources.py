"""Where packets and originals come from: image files, flight-runtime pass files, recorded packet files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgeae.masks import PRNG_VERSION, make_mask
from edgeae.wire.products import SparseFrame, sample_dtype
from edgeae.wire.stream import MAGIC, read_packet_file, split_stream


def image_samples(path: str | Path, channels: int | None = None) -> tuple[np.ndarray, int]:
    """An image file as integer samples (H, W, C) uint8/uint16 and its bit depth.

    Integer samples of up to 16 bits are kept exactly; float samples (in [0, 1]) and integers of more than 16
    bits, which the wire format cannot carry, are quantised to 16 bits (NaN and inf become 0)."""
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels, detect_nodata=False)
    exact = np.dtype(img.raw_dtype).kind in "ui" and img.bit_depth <= 16
    bits = max(1, int(img.bit_depth)) if exact else 16
    top = 2**bits - 1
    factor = np.float32(img.scale if exact else top)
    samples = np.round(np.clip(img.pixels * factor, 0, top)).astype(sample_dtype(bits))
    return samples, bits


def as_float(samples: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer samples as float32 in [0, 1], as the ground decodes them (divided by 2**bit_depth - 1)."""
    return samples.astype(np.float32) / np.float32(2**bit_depth - 1)


def sparse_from_samples(
    samples: np.ndarray, bit_depth: int, keep: float, seed: int, pattern: str = "uniform", frame_id: int = 0
) -> SparseFrame:
    """The sparse product of integer samples (H, W, C): the values the mask of (seed, keep, pattern) keeps."""
    h, w, c = samples.shape
    mask = make_mask(seed, (h, w), keep, pattern)
    return SparseFrame(frame_id, h, w, c, bit_depth, keep, pattern, seed, PRNG_VERSION, samples[mask])


def read_packets(path: str | Path) -> tuple[list[tuple[float, bytes]], int]:
    """Packets of one file, with arrival times when recorded, and bytes that formed no packet.

    An edgeae packet file (``EAPK`` records) keeps every record as it is, damaged or not; anything else is
    read as CCSDS space packets back to back (a flight-runtime ``pass_NNNNN.bin``), resynchronising on the
    CRC. A directory means every ``*.bin`` file in it, in name order.
    """
    p = Path(path)
    if p.is_dir():
        out: list[tuple[float, bytes]] = []
        rest = 0
        files = sorted(p.glob("*.bin"))
        if not files:
            raise FileNotFoundError(f"no *.bin packet files in {p}")
        for f in files:
            recs, r = read_packets(f)
            out += recs
            rest += r
        return out, rest
    data = p.read_bytes()
    if data[:4] == MAGIC:
        return read_packet_file(p)
    recs = []
    skipped = 0
    for pkt, k in split_stream(data):
        if pkt is None:
            skipped += k
        else:
            recs.append((0.0, pkt))
    return recs, skipped


def load_originals(path: str | Path, frame_ids: list[int]) -> dict[int, np.ndarray]:
    """Originals for PSNR from a directory of files whose name ends in the frame id (``frame_3.png``,
    ``3.png``, ``img_0003.tif``), as float32 in [0, 1]."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"original {p} does not exist")
    out = {}
    for f in sorted(p.iterdir()):
        m = re.search(r"(\d+)$", f.stem)
        if (
            m
            and int(m.group(1)) in frame_ids
            and f.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
        ):
            s, bits = image_samples(f)
            out[int(m.group(1))] = as_float(s, bits)
    return out
