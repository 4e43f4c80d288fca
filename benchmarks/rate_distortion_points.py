"""The rate points of the rate-distortion benchmark (:mod:`benchmarks.rate_distortion`): what each method sends
of one image and what the ground gets back, as records of bytes, bpp, PSNR, MS-SSIM (:func:`ms_ssim`, Wang 2003)
and encoding and decoding times: sparse pixels rebuilt by a fill (:func:`sparse_points`), quantised CAE latents
(:func:`latent_points`) and image codecs over their quality ladders (:func:`codec_points`)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edgeae.ground import baselines
from edgeae.masks import make_mask
from edgeae.metrics import psnr
from edgeae.reconstruct import reconstruct
from edgeae.wire.codec import CODECS, decode_samples, encode_samples

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),  # quality
    "webp": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),  # quality
    "jpeg2000": (22, 25, 28, 31, 34, 37, 40, 44, 48),  # target PSNR (dB) of the single quality layer
    "jpegxl": (12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5),  # butteraugli distance
}


# ------------------------------------------------------------------------------------------ MS-SSIM
def _gauss_valid(x: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Separable Gaussian filter of (H, W) keeping only fully covered outputs ('valid')."""
    from scipy.ndimage import correlate1d

    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    y = correlate1d(correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    r = size // 2
    return y[r : y.shape[0] - r, r : y.shape[1] - r]


def _ssim_cs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gauss_valid(a), _gauss_valid(b)
    saa = _gauss_valid(a * a) - mu_a**2
    sbb = _gauss_valid(b * b) - mu_b**2
    sab = _gauss_valid(a * b) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ms_ssim(original: np.ndarray, recon: np.ndarray) -> float:
    """Multi-scale SSIM (Wang 2003) of (H, W[, C]) images in [0, 1]; needs min(H, W) >= 176 (else nan)."""
    a = np.asarray(original, np.float64)
    b = np.asarray(recon, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare images of shapes {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < 11 * 2 ** (len(MSSSIM_WEIGHTS) - 1):
        return float("nan")
    w = np.array(MSSSIM_WEIGHTS)
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        cs_list = []
        for level in range(len(w)):
            ssim, cs = _ssim_cs(x, y)
            cs_list.append(max(cs, 0.0))
            if level < len(w) - 1:
                h2, w2 = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
                x = x[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
                y = y[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
        vals.append(float(np.prod(np.array(cs_list[:-1]) ** w[:-1]) * max(ssim, 0.0) ** w[-1]))
    return float(np.mean(vals))


# ------------------------------------------------------------------------------------------ methods
Record = dict[str, float]


def _record(orig: np.ndarray, recon: np.ndarray, nbytes: int, enc_s: float, dec_s: float) -> Record:
    h, w = orig.shape[:2]
    recon = np.clip(recon, 0.0, 1.0)
    return {
        "bytes": float(nbytes),
        "bpp": 8.0 * nbytes / (h * w),
        "psnr": psnr(orig, recon),
        "ms-ssim": ms_ssim(orig, recon),
        "encoding_time": enc_s,
        "decoding_time": dec_s,
    }


SAMPLE_CODECS = ("delta-deflate", "ccsds121")
"""Lossless codecs of the kept values, each coding all of a frame's values as one stream (no packets)."""


def sparse_points(
    samples: np.ndarray, seed: int, keeps: tuple[float, ...], fills: dict[str, Any]
) -> Iterator[tuple[str, float, Record]]:
    """(method, keep, record) for every keep fraction and fill (name -> predictor or None for classical): the
    kept values raw and under each of :data:`SAMPLE_CODECS` (same reconstruction, different bytes)."""
    h, w, c = samples.shape
    orig = samples.astype(np.float32) / 255.0
    for keep in keeps:
        t0 = time.perf_counter()
        known = make_mask(seed, (h, w), keep)
        values = samples[known]
        t_sample = time.perf_counter() - t0
        coded = {}
        for name in SAMPLE_CODECS:
            t0 = time.perf_counter()
            blob = encode_samples(values, CODECS[name], 8)
            t_code = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = decode_samples(blob, CODECS[name], np.dtype(np.uint8), values.shape, 8)
            coded[name] = (len(blob), t_code, time.perf_counter() - t0)
        known_g = make_mask(seed, (h, w), keep)  # the ground regenerates the mask from the seed
        img = np.zeros((h, w, c), np.float32)
        img[known_g] = got.astype(np.float32) / 255.0
        for name, predictor in fills.items():
            t0 = time.perf_counter()
            recon = reconstruct(img, known_g, "cae" if predictor is not None else name, predictor, progress=False)
            t_fill = time.perf_counter() - t0
            yield f"sparse+{name} (raw)", keep, _record(orig, recon, values.nbytes, t_sample, t_fill)
            for cname, (nbytes, t_code, t_uncode) in coded.items():
                rec = _record(orig, recon, nbytes, t_sample + t_code, t_uncode + t_fill)
                yield f"sparse+{name} ({cname})", keep, rec


def latent_points(
    samples: np.ndarray, encoder: Callable[[np.ndarray], np.ndarray], decoder: Callable[[np.ndarray], np.ndarray],
    bits: tuple[int, ...], tile: int = 128, input_keep: float = 0.5, seed: int = 0,
) -> Iterator[tuple[str, float, Record]]:  # fmt: skip
    """(method, bits, record): per-tile-scaled N-bit latents, deflate-coded (and int8 uncoded)."""
    from edgeae.tiling import blend_tiles, extract_tiles, tile_positions

    h, w, c = samples.shape
    orig = samples.astype(np.float32) / 255.0
    t0 = time.perf_counter()
    pos = tile_positions(h, w, tile, tile)
    x = np.ascontiguousarray(extract_tiles(orig, pos, tile).transpose(0, 3, 1, 2))
    if input_keep < 1.0:  # the encoder's input as flight and edgeae.ground.pipeline.encode_latents give it
        from edgeae.cae_input import encoder_input_mask, mask_encoder_input

        keep, pattern = encoder_input_mask(getattr(encoder, "metadata", None), input_keep)
        frame_mask = make_mask(seed, (h, w), keep, pattern)[..., None]
        mask_encoder_input(x, extract_tiles(frame_mask, pos, tile)[..., 0])
    z = np.asarray(encoder(x), np.float32)
    t_enc = time.perf_counter() - t0
    zmax = np.abs(z).reshape(len(z), -1).max(axis=1).reshape(-1, 1, 1, 1)
    for nb in bits:
        t0 = time.perf_counter()
        top = 2 ** (nb - 1) - 1
        scale = (np.where(zmax > 0, zmax, 1.0) / top).astype(np.float32)
        q = np.clip(np.round(z / scale), -top, top).astype(np.int8)
        blob = zlib.compress(q.tobytes(), 9)
        t_q = time.perf_counter() - t0
        t0 = time.perf_counter()
        q2 = np.frombuffer(zlib.decompress(blob), np.int8).reshape(q.shape)
        y = np.asarray(decoder(q2.astype(np.float32) * scale), np.float32)
        recon = blend_tiles(y.transpose(0, 2, 3, 1), pos, (h, w, c), tile, window="uniform")
        t_dec = time.perf_counter() - t0
        side = scale.nbytes  # one float32 scale per tile
        yield "latent intN (deflate)", float(nb), _record(orig, recon, len(blob) + side, t_enc + t_q, t_dec)
        if nb == 8:
            yield "latent int8 (raw)", 8.0, _record(orig, recon, q.nbytes + side, t_enc + t_q, t_dec)


def codec_roundtrip(img: np.ndarray, codec: str, q: float) -> tuple[bytes, np.ndarray, float, float]:
    """Encode uint8 (H, W, C) with ``codec`` at ``q``; (bytes, decoded (H, W, C) uint8, enc s, dec s)."""
    if codec not in LADDERS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(LADDERS)}")
    return baselines.roundtrip(img, codec, q)


def codec_points(samples: np.ndarray, codecs: tuple[str, ...]) -> Iterator[tuple[str, float, Record]]:
    orig = samples.astype(np.float32) / 255.0
    for codec in codecs:
        for q in LADDERS[codec]:
            data, out, te, td = codec_roundtrip(samples, codec, q)
            yield codec, float(q), _record(orig, out.astype(np.float32) / 255.0, len(data), te, td)
