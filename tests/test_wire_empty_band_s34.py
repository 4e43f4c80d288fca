"""Empty sparse bands under every sample codec (audit s34-a6): delta-deflate could not code a band that keeps no
pixel (``reshape(0, -1)``), so a flight frame with such a band was dropped whole, anomaly patches included."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.ground.decode import decode_sparse
from edgeae.ground.reassembly import Receiver
from edgeae.masks import make_mask
from edgeae.wire.codec import decode_samples, encode_samples
from edgeae.wire.layout import WireConfig
from edgeae.wire.packets import packetise
from edgeae.wire.products import SparseFrame


@pytest.mark.parametrize("shape", [(0, 1), (0, 3), (0,)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_delta_deflate_codes_no_samples(shape: tuple[int, ...], dtype: type) -> None:
    data = encode_samples(np.zeros(shape, dtype), 1)
    assert decode_samples(data, 1, np.dtype(dtype), shape).shape == shape


@pytest.mark.parametrize("codec", ["none", "delta-deflate", "ccsds121"])
def test_a_banded_frame_with_empty_bands_round_trips(codec: str) -> None:
    if codec == "ccsds121":
        pytest.importorskip("imagecodecs")
    h, w, keep, seed = 64, 40, 0.004, 5
    mask = make_mask(seed, (h, w), keep, "uniform")
    rows = mask.any(axis=1)
    assert 0 < rows.sum() < h  # some one-row bands keep a pixel, most keep none
    img = (np.arange(h * w, dtype=np.uint16).reshape(h, w, 1) % 251).astype(np.uint8)
    frame = SparseFrame(0, h, w, 1, 8, keep, "uniform", seed, 1, img[mask])
    rx = Receiver()
    for p in packetise(frame, config=WireConfig(codec=codec, band_rows=1)):
        rx.receive(p)
    (asm,) = rx.products.values()
    got = decode_sparse(asm)
    assert np.array_equal(got.known, mask) and np.array_equal(got.samples[mask], img[mask])
