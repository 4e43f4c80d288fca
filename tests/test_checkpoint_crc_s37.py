"""A checkpoint saved without CRC-32s (``torch.serialization.set_crc32_options(False)``: torch.load reads it) is
not refused as damaged (review s37 r10 #2); one saved with them and a flipped byte still is."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgeae.checkpoint import damaged_record  # noqa: E402


def _save(path: Path, crc: bool) -> None:
    torch.serialization.set_crc32_options(crc)
    try:
        torch.save({"w": torch.arange(4096, dtype=torch.float32)}, path)
    finally:
        torch.serialization.set_crc32_options(True)


def test_a_checkpoint_saved_without_crcs_is_not_called_damaged(tmp_path: Path) -> None:
    p = tmp_path / "nocrc.pt"
    _save(p, crc=False)
    assert float(torch.load(p, weights_only=True)["w"].sum()) == sum(range(4096))
    assert damaged_record(p) is None
    assert damaged_record(io.BytesIO(p.read_bytes())) is None


def test_a_flipped_byte_in_a_checkpoint_with_crcs_is_still_found(tmp_path: Path) -> None:
    p = tmp_path / "crc.pt"
    _save(p, crc=True)
    assert damaged_record(p) is None
    data = bytearray(p.read_bytes())
    at = data.find(bytes(torch.arange(4096, dtype=torch.float32).numpy().tobytes()[4000:4016]))
    assert at > 0
    data[at] ^= 0x01
    p.write_bytes(bytes(data))
    why = damaged_record(p)
    assert why is not None and "CRC-32" in why
